# Shared build helpers. Every library of the project goes through peftd_library, every test
# binary through peftd_test, so warnings, include roots and test labels stay uniform.

# peftd_library(NAME SOURCES ... [DEPS ...] [TORCH])
#   TORCH: the target includes <torch/torch.h> and reuses the project's precompiled header.
function(peftd_library name)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/proto_gen)
  target_compile_options(${name} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  if(ARG_TORCH)
    peftd_use_torch_pch(${name})
  endif()
endfunction()

# One precompiled <torch/torch.h> shared by every LibTorch target (it dominates their compile time).
# GCC refuses a PCH built with other macros, and -pthread defines _REENTRANT: gRPC, protobuf and
# RE2 hand -pthread to whatever links them, so every LibTorch target (and the PCH) takes it.
function(peftd_use_torch_pch target)
  if(NOT TARGET peftd_torch_pch)
    add_library(peftd_torch_pch STATIC ${PROJECT_SOURCE_DIR}/cmake/torch_pch.cc)
    target_link_libraries(peftd_torch_pch PUBLIC ${TORCH_LIBRARIES})
    target_compile_options(peftd_torch_pch PRIVATE -Wall -Wextra -Wno-unused-parameter -pthread)
    target_precompile_headers(peftd_torch_pch PRIVATE <torch/torch.h>)
  endif()
  target_link_libraries(${target} PUBLIC ${TORCH_LIBRARIES})
  target_precompile_headers(${target} REUSE_FROM peftd_torch_pch)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter -pthread)
endfunction()

# peftd_test(NAME SOURCES ... DEPS ... LABELS unit|integration|slow [TORCH] [TIMEOUT s])
# Each GoogleTest case becomes its own CTest test carrying the labels, so `ctest -L unit` runs the
# fast set alone.
function(peftd_test name)
  cmake_parse_arguments(ARG "TORCH" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_definitions(${name} PRIVATE
    PEFTD_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    PEFTD_BINARY_DIR="${PROJECT_BINARY_DIR}"
    PEFTD_FIXTURES_DIR="${PEFTD_FIXTURES_DIR}")
  if(ARG_TORCH)
    peftd_use_torch_pch(${name})
  endif()
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  gtest_discover_tests(${name} TEST_PREFIX "${name}."
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
    DISCOVERY_TIMEOUT 60)
endfunction()

# peftd_glob_library(NAME [TORCH] DEPS ...): a library of every .cc file in the current folder.
# Globbing keeps parallel work on one folder free of CMakeLists merge conflicts.
function(peftd_glob_library name)
  cmake_parse_arguments(ARG "TORCH" "" "DEPS;EXCLUDE" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  foreach(ex ${ARG_EXCLUDE})
    list(REMOVE_ITEM srcs ${CMAKE_CURRENT_SOURCE_DIR}/${ex})
  endforeach()
  if(ARG_TORCH)
    peftd_library(${name} TORCH SOURCES ${srcs} DEPS ${ARG_DEPS})
  else()
    peftd_library(${name} SOURCES ${srcs} DEPS ${ARG_DEPS})
  endif()
endfunction()

# peftd_glob_tests([TORCH] DEPS ...): one test binary per *_test.cc in the current folder.
# Label from the file name: *_integration_test.cc -> integration, *_slow_test.cc -> slow,
# anything else -> unit.
function(peftd_glob_tests)
  cmake_parse_arguments(ARG "TORCH" "TIMEOUT" "DEPS" ${ARGN})
  file(GLOB tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cc)
  get_filename_component(folder ${CMAKE_CURRENT_SOURCE_DIR} NAME)
  foreach(t ${tests})
    get_filename_component(base ${t} NAME_WE)
    set(label unit)
    set(timeout 300)
    if(base MATCHES "_integration_test$")
      set(label integration)
      set(timeout 900)
    elseif(base MATCHES "_slow_test$")
      set(label slow)
      set(timeout 1800)
    endif()
    if(ARG_TIMEOUT)
      set(timeout ${ARG_TIMEOUT})
    endif()
    if(ARG_TORCH)
      peftd_test(${folder}_${base} TORCH SOURCES ${t} DEPS ${ARG_DEPS} LABELS ${label} TIMEOUT ${timeout})
    else()
      peftd_test(${folder}_${base} SOURCES ${t} DEPS ${ARG_DEPS} LABELS ${label} TIMEOUT ${timeout})
    endif()
  endforeach()
endfunction()

# peftd_link_jemalloc(TARGET): link jemalloc (when installed) with pages kept across steps
# (cmake/jemalloc_conf.cc). For executables that train.
function(peftd_link_jemalloc target)
  find_library(JEMALLOC_LIB jemalloc)
  if(JEMALLOC_LIB)
    target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/cmake/jemalloc_conf.cc)
    target_link_libraries(${target} PRIVATE ${JEMALLOC_LIB})
  endif()
endfunction()
