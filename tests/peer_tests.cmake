# swrun against llama.cpp (the independent oracle, tests/peer/): llama.cpp's CPU library is built once by
# scripts/build-llama-cpp.sh (a fixture step, cached under ~/.cache/swrun), then one comparison per architecture
# on synthetic models in F32, F16, Q8_0 and Q4_K (gpt-oss: F32, F16, MXFP4 experts; gemma4-moe: F32, Q8_0, Q4_K;
# gemma4-partial-rope: F32) with real vocabularies; and
# every --attn spec on every architecture. The tests need Python (numpy) and network access for the first llama.cpp
# sdist download.
if(NOT Python3_Interpreter_FOUND)
  return()  # reference_tests.cmake already fails loudly without Python
endif()

add_test(NAME peer_llama_cpp_build COMMAND ${PROJECT_SOURCE_DIR}/scripts/build-llama-cpp.sh)
set_tests_properties(peer_llama_cpp_build PROPERTIES FIXTURES_SETUP peer_llama_cpp TIMEOUT 3600 LABELS peer)

foreach(arch qwen2 qwen2-tied qwen3 gemma2 gemma3 gemma3-27b phi3 llama3 gpt-oss gemma4 gemma4-31b gemma4-moe
        gemma4-partial-rope)
  add_test(NAME peer_llama_${arch}
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/peer/compare_llama.py --arch ${arch}
                   --swrun-logits $<TARGET_FILE:swrun_logits> --make-synthetic $<TARGET_FILE:make_synthetic_model>)
  set_tests_properties(peer_llama_${arch} PROPERTIES FIXTURES_REQUIRED peer_llama_cpp SKIP_RETURN_CODE 77
                       TIMEOUT 1800 LABELS peer RESOURCE_LOCK peer_cpu)
endforeach()

add_test(NAME attn_specs_all_archs
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/peer/attn_specs.py $<TARGET_FILE:swrun_logits>
                 $<TARGET_FILE:make_synthetic_model> ${CMAKE_CURRENT_BINARY_DIR}/attn_specs)

# swrun perplexity against llama.cpp's method on llama.cpp's library (tests/peer/llama_perplexity.cpp), and the
# KL-divergence base file both ways, on synthetic F32/F16 models with the phi-3 vocabulary (~40 s).
add_test(NAME peer_llama_perplexity
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/peer/perplexity_peer.py --swrun $<TARGET_FILE:swrun>
                 --make-synthetic $<TARGET_FILE:make_synthetic_model>)
set_tests_properties(peer_llama_perplexity PROPERTIES FIXTURES_REQUIRED peer_llama_cpp TIMEOUT 1200 LABELS peer
                     RESOURCE_LOCK peer_cpu)
