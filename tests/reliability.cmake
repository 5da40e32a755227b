# Reliability (issue 11; docs/reliability.md): the bad-input matrix, CPU determinism, valgrind memcheck of
# em-generate on the bundled model. The fuzz targets' corpus replays are in tests/fuzz.cmake (label fuzz).
em_add_test(NAME test_bad_input SOURCES test_bad_input.c LABELS unit)
em_add_test(NAME test_determinism SOURCES test_determinism.c LABELS unit)

# valgrind memcheck of em-generate on the bundled hybrid (packed by tests/model.cmake's pack_model_hybrid).
# Not in sanitizer builds: valgrind cannot run ASan binaries (and ASan+LSan already check those). Not in CUDA
# builds either: the CUDA runtime dlopens the driver through an RPATH, and glibc's is_dst() reads past the string
# with SSE2 there (valgrind reports 4 "Invalid read" in dl-load.c, not ours); the CPU build (CI stage 1) runs it.
if(NOT EM_SANITIZE AND NOT EM_HAVE_CUDA AND TARGET em-generate AND TEST pack_model_hybrid)
  add_test(NAME test_rel_valgrind COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_rel_valgrind.sh
           $<TARGET_FILE:em-generate> ${CMAKE_BINARY_DIR}/models/hybrid.emb)
  set_tests_properties(test_rel_valgrind PROPERTIES LABELS valgrind TIMEOUT 240 SKIP_RETURN_CODE 77
                       FIXTURES_REQUIRED model_hybrid)
endif()
