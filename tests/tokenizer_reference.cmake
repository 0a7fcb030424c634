# Fresh random strings on every run: the independent Python reference encodes them with the example model's
# vocabulary and the C++ tokenizer must produce the same ids (skipped, exit 77, when the model is absent).
if(Python3_Interpreter_FOUND AND TARGET test_tokenizer)
  add_test(NAME tokenizer_vs_reference
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/reference/tokenizer_ref.py
                   --compare-with $<TARGET_FILE:test_tokenizer> --random 300)
  set_tests_properties(tokenizer_vs_reference PROPERTIES SKIP_RETURN_CODE 77)
endif()
