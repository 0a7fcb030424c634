# llama.cpp's tokenizer test suite (vocabularies and expected ids from the llama-cpp-python source package,
# fetched by scripts/fetch-llama-vocabs.sh) through `swrun tokenize`: every case must match.
if(Python3_Interpreter_FOUND)
  add_test(NAME tokenizer_llama_suite
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_llama_suite.py $<TARGET_FILE:swrun>)
endif()
# Fresh random strings against llama.cpp's tokenizer itself, once scripts/build-llama-oracle.sh has built it
# (skipped, exit 77, otherwise).
if(Python3_Interpreter_FOUND)
  add_test(NAME tokenizer_vs_llamacpp
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/reference/tokenizer_vs_llamacpp.py
                   $<TARGET_FILE:swrun> --random 300)
  set_tests_properties(tokenizer_vs_llamacpp PROPERTIES SKIP_RETURN_CODE 77)
endif()
