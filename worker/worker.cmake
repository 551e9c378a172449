# The worker process: the lease loop (LibTorch-free, tested with a fake runner), the job runner
# and the commands (LibTorch), and the binary.
peftd_library(peftd_lease_loop
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/lease_loop.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/lease_inputs.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/blob_transfer.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/progress_reporter.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/job_completion.cc
  DEPS peftd_common peftd_common_grpc peftd_proto gRPC::grpc++)

peftd_library(peftd_worker TORCH
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/demo_run.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/spec_adapter.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/run_job.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/gang_runner.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/merged_export.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/init_weights.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/load_trainable.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/job_file.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/json_log_sink.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/console_progress.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/signal_watch.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/train_command.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/eval_command.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/tokenize_command.cc
  DEPS peftd_train peftd_model peftd_adapters peftd_data peftd_job_spec peftd_lease_loop
       peftd_proto)

add_executable(peftd-worker ${CMAKE_CURRENT_SOURCE_DIR}/main.cc)
target_link_libraries(peftd-worker PRIVATE peftd_worker)
peftd_use_torch_pch(peftd-worker)
# A malloc that keeps its memory: glibc's default re-faults every page of a big model each step.
peftd_link_jemalloc(peftd-worker)
