# make_layout_model (tools/layout_models.cpp): the Q4_K_M type rule, the random block pools and the streamed
# writer (test_layout_models); and on the command line, full-size gemma3-270m and qwen2.5-0.5b files checked
# through `swrun inspect` and a short greedy generation on the CPU backend (cli_layout_model).
target_sources(test_layout_models PRIVATE ${PROJECT_SOURCE_DIR}/tools/layout_models.cpp)
if(Python3_Interpreter_FOUND)
  add_test(NAME cli_layout_model
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/cli_layout_model.py
                   $<TARGET_FILE:make_layout_model> $<TARGET_FILE:swrun> ${CMAKE_CURRENT_BINARY_DIR}/layout_model
                   $<TARGET_FILE:swrun_logits>)
  set_tests_properties(cli_layout_model PROPERTIES SKIP_RETURN_CODE 77)
endif()
