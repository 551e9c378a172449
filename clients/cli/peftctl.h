// peftctl's entry point, separate from main() so that tests run every command in-process.
#ifndef PEFTD_CLIENTS_CLI_PEFTCTL_H_
#define PEFTD_CLIENTS_CLI_PEFTCTL_H_

#include <iosfwd>

namespace peftd::cli {

// Parses `argv` and runs the command. Machine and human output go to `out`, errors and notes to
// `err`. Live progress bars are drawn only when `out`/`err` are std::cout/std::cerr on a TTY.
// Returns the exit code (see exit_codes.h).
int RunPeftctl(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_PEFTCTL_H_
