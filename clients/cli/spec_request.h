// The job spec of `peftctl submit` and `peftctl sweep submit` (the sweep's base): from a job file
// and flags (spec_flags.h), with local dataset files uploaded and replaced by their ids.
#ifndef PEFTD_CLIENTS_CLI_SPEC_REQUEST_H_
#define PEFTD_CLIENTS_CLI_SPEC_REQUEST_H_

#include "CLI/CLI.hpp"
#include "clients/cli/cli_context.h"
#include "clients/cli/spec_flags.h"

namespace peftd::cli {

// Registers -f/--file, the spec flags, --label, --name and --request-id on `sub`, into `flags`.
void AddSpecFlags(CLI::App* sub, SubmitFlags& flags);

// The request the flags describe: the job file, the flags over it, the required fields checked,
// a random request id when none was given, and dataset files uploaded (each upload printed
// unless --json). Returns 0, or the exit code of a failure already reported.
int BuildJobRequest(Cli& cli, const SubmitFlags& flags, v1::CreateJobRequest* request);

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_SPEC_REQUEST_H_
