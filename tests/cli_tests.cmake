# CLI behaviour on bad input (one clear line, non-zero exit) and on a tiny valid model.
if(Python3_Interpreter_FOUND)
  add_test(NAME cli_errors
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/cli_errors.py $<TARGET_FILE:swrun>
                   ${CMAKE_CURRENT_BINARY_DIR}/cli_errors)
endif()
if(Python3_Interpreter_FOUND)
  add_test(NAME cli_profile_ab
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/cli_modes.py $<TARGET_FILE:swrun>
                   ${CMAKE_CURRENT_BINARY_DIR}/cli_modes)
endif()
if(Python3_Interpreter_FOUND)
  add_test(NAME cli_bench
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/cli_bench.py $<TARGET_FILE:swrun>
                   ${CMAKE_CURRENT_BINARY_DIR}/cli_bench)
endif()
if(Python3_Interpreter_FOUND)
  add_test(NAME cli_load_log
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/cli_load_log.py $<TARGET_FILE:swrun>
                   $<TARGET_FILE:make_synthetic_model> ${CMAKE_CURRENT_BINARY_DIR}/cli_load_log)
endif()
if(Python3_Interpreter_FOUND)
  add_test(NAME cli_fit
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/cli_fit.py $<TARGET_FILE:swrun>
                   $<TARGET_FILE:make_synthetic_model> ${CMAKE_CURRENT_BINARY_DIR}/cli_fit)
endif()
if(Python3_Interpreter_FOUND)
  # swrun perplexity on the example model: output lines, its own KL base file read back, several specs side by
  # side, bad input (~70 s)
  add_test(NAME cli_perplexity
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/cli_perplexity.py $<TARGET_FILE:swrun>
                   ${CMAKE_CURRENT_BINARY_DIR}/cli_perplexity)
  set_tests_properties(cli_perplexity PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
endif()
if(Python3_Interpreter_FOUND)
  # swrun needle on the example model: a 128-key window everywhere loses needles ~700 tokens back that the model's
  # own policy finds; outputs and bad input (8 trials of 768 tokens, ~110 CPU-s on one thread)
  add_test(NAME cli_needle
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/cli_needle.py $<TARGET_FILE:swrun>
                   ${CMAKE_CURRENT_BINARY_DIR}/cli_needle)
  set_tests_properties(cli_needle PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900)
  # Gemma 4 on a synthetic E-variant file with llama.cpp's gemma-4 vocabulary: inspect's layout, generation (~30 s)
  add_test(NAME cli_gemma4
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/cli_gemma4.py $<TARGET_FILE:swrun>
                   $<TARGET_FILE:make_synthetic_model> ${CMAKE_CURRENT_BINARY_DIR}/cli_gemma4)
  set_tests_properties(cli_gemma4 PROPERTIES TIMEOUT 600)
endif()
