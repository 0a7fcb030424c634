# libFuzzer target for the GGUF reader: -DSWRUN_FUZZ=ON with clang. The reader's sources are compiled into
# the target itself so that ASan/UBSan instrument them (swrun_core is built without sanitizers).
#   ./tests/gguf_fuzz -max_total_time=120 <scratch dir> ../tests/fuzz/seeds ../tests/fuzz/corpus
if(SWRUN_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "SWRUN_FUZZ needs clang (configure with -DCMAKE_CXX_COMPILER=clang++)")
  endif()
  add_executable(gguf_fuzz
    ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/gguf_fuzz.cpp
    ${PROJECT_SOURCE_DIR}/runtime/gguf.cpp
    ${PROJECT_SOURCE_DIR}/runtime/ggml_types.cpp
    ${PROJECT_SOURCE_DIR}/runtime/gguf_inspect.cpp)
  target_include_directories(gguf_fuzz PRIVATE ${PROJECT_SOURCE_DIR})
  set(SWRUN_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1)
  target_compile_options(gguf_fuzz PRIVATE ${SWRUN_FUZZ_FLAGS})
  target_link_options(gguf_fuzz PRIVATE ${SWRUN_FUZZ_FLAGS})
endif()
