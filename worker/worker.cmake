# The worker process: the lease loop (LibTorch-free, tested with a fake runner) and the binary.
peftd_library(peftd_lease_loop
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/lease_loop.cc
  DEPS peftd_common peftd_common_grpc peftd_proto gRPC::grpc++)
