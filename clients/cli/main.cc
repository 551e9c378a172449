// peftctl: the command-line client of peftd. Everything lives in RunPeftctl (peftctl.h).
#include <iostream>

#include "clients/cli/peftctl.h"

int main(int argc, char** argv) { return peftd::cli::RunPeftctl(argc, argv, std::cout, std::cerr); }
