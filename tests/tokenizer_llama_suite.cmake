# llama.cpp's tokenizer test suite (vocabularies and expected ids from the llama-cpp-python source package,
# fetched by scripts/fetch-llama-vocabs.sh) through `swrun tokenize`: every case must match.
if(Python3_Interpreter_FOUND)
  add_test(NAME tokenizer_llama_suite
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_llama_suite.py $<TARGET_FILE:swrun>)
endif()
