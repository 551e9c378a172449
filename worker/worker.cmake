# The worker process: the lease loop (LibTorch-free, tested with a fake runner) and the binary.
peftd_library(peftd_lease_loop
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/lease_loop.cc
  DEPS peftd_common peftd_common_grpc peftd_proto gRPC::grpc++)

peftd_library(peftd_worker TORCH
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/demo_run.cc
  DEPS peftd_train peftd_model peftd_adapters)

add_executable(peftd-worker ${CMAKE_CURRENT_SOURCE_DIR}/main.cc)
target_link_libraries(peftd-worker PRIVATE peftd_worker)
peftd_use_torch_pch(peftd-worker)
# A malloc that keeps its memory: glibc's default re-faults every page of a big model each step.
peftd_link_jemalloc(peftd-worker)
