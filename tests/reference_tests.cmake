# C++ logits against the independent Python reference (tests/reference/): the example model, synthetic gemma3
# and llama models, and sliding-vs-dense equivalence. check_logits.py exits 77 when the example model is absent.
add_executable(swrun_logits ${PROJECT_SOURCE_DIR}/tools/swrun_logits.cpp)
target_link_libraries(swrun_logits PRIVATE ${SWRUN_LIBS})
target_include_directories(swrun_logits PRIVATE ${PROJECT_SOURCE_DIR})

add_executable(make_synthetic_model ${PROJECT_SOURCE_DIR}/tools/make_synthetic_model.cpp)
target_link_libraries(make_synthetic_model PRIVATE ${SWRUN_LIBS})
target_include_directories(make_synthetic_model PRIVATE ${PROJECT_SOURCE_DIR})

if(NOT Python3_Interpreter_FOUND)
  # CI has Python; a machine without it must not look green on these checks.
  # (echo succeeds; WILL_FAIL turns that into a failure that shows the message)
  add_test(NAME reference_python_missing
           COMMAND ${CMAKE_COMMAND} -E echo "Python 3 with numpy and gguf is needed for the reference tests")
  set_tests_properties(reference_python_missing PROPERTIES WILL_FAIL TRUE)
  return()
endif()

set(SWRUN_CHECK_LOGITS ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/reference/check_logits.py
    --swrun-logits $<TARGET_FILE:swrun_logits> --make-synthetic $<TARGET_FILE:make_synthetic_model>)

add_test(NAME reference_gemma3_270m COMMAND ${SWRUN_CHECK_LOGITS} real)
add_test(NAME reference_synthetic_gemma3 COMMAND ${SWRUN_CHECK_LOGITS} synthetic --arch gemma3 --tied)
add_test(NAME reference_synthetic_llama COMMAND ${SWRUN_CHECK_LOGITS} synthetic --arch llama)
add_test(NAME reference_synthetic_llama_tied COMMAND ${SWRUN_CHECK_LOGITS} synthetic --arch llama --tied)
add_test(NAME reference_sliding_vs_dense_gemma3 COMMAND ${SWRUN_CHECK_LOGITS} sliding-vs-dense --arch gemma3 --tied)
add_test(NAME reference_sliding_vs_dense_llama COMMAND ${SWRUN_CHECK_LOGITS} sliding-vs-dense --arch llama)
set_tests_properties(reference_gemma3_270m reference_synthetic_gemma3 reference_synthetic_llama
                     reference_synthetic_llama_tied reference_sliding_vs_dense_gemma3
                     reference_sliding_vs_dense_llama
                     PROPERTIES SKIP_RETURN_CODE 77 LABELS reference)
