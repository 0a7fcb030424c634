# Dequantization and quantization against the gguf Python package on a fresh random set of blocks every run
# (the committed tests/fixtures/quant set is checked by test_dequant itself). Exit 77 = gguf not installed.
if(Python3_Interpreter_FOUND AND TARGET test_dequant)
  set(SWRUN_FRESH_QUANT_DIR ${CMAKE_CURRENT_BINARY_DIR}/quant_fixtures_fresh)
  add_test(NAME dequant_vs_gguf_fresh
           COMMAND sh -c "\"$1\" \"$2\" --seed random --out \"$3\" && SWRUN_QUANT_FIXTURES=\"$3\" \"$4\" --gtest_filter=Dequant.MatchesGgufPackageOnFixtures:Quantize.MatchesGgufPackageBytes"
                   sh ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/reference/make_quant_fixtures.py
                   ${SWRUN_FRESH_QUANT_DIR} $<TARGET_FILE:test_dequant>)
  set_tests_properties(dequant_vs_gguf_fresh PROPERTIES SKIP_RETURN_CODE 77)
endif()
