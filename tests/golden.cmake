# Golden tests (label golden): em-pack packs each HF fixture (f32 and bf16), then test_golden compares the
# CPU backend's logits and greedy ids with HF's (tools/goldens/make_goldens.py; tests/data/README.md).
if(TARGET em-pack)
  add_executable(test_golden test_golden.c)
  target_link_libraries(test_golden PRIVATE em_internal em_testutil em_packlib)
  set(golden_dir ${CMAKE_BINARY_DIR}/golden)
  file(MAKE_DIRECTORY ${golden_dir})
  # the NemotronH hybrids (issue 5): attention + MLP layers, CPU only until the CUDA executor runs them
  foreach(fixture mamba2_tiny nemotronh_mmm nemotronh_hybrid_gelu nemotronh_hybrid_relu2)
    foreach(dtype f32 bf16)
      set(b ${golden_dir}/${fixture}_${dtype}.emb)
      add_test(NAME pack_${fixture}_${dtype}
               COMMAND em-pack ${CMAKE_CURRENT_SOURCE_DIR}/data/${fixture} -o ${b} --dtype ${dtype})
      set_tests_properties(pack_${fixture}_${dtype} PROPERTIES LABELS golden FIXTURES_SETUP blob_${fixture}_${dtype})
      if(dtype STREQUAL "f32")
        set(g ${CMAKE_CURRENT_SOURCE_DIR}/data/${fixture}/golden.safetensors)
      else()
        set(g ${CMAKE_CURRENT_SOURCE_DIR}/data/${fixture}/golden_bf16.safetensors)
      endif()
      add_test(NAME golden_${fixture}_${dtype} COMMAND test_golden ${b} ${g} 1e-4 cpu)
      set_tests_properties(golden_${fixture}_${dtype} PROPERTIES LABELS golden FIXTURES_REQUIRED blob_${fixture}_${dtype})
      if(EM_HAVE_CUDA AND NOT fixture MATCHES "hybrid") # the same goldens on the CUDA executor (SKIP without a device)
        add_test(NAME golden_${fixture}_${dtype}_cuda COMMAND test_golden ${b} ${g} 1e-4 cuda)
        set_tests_properties(golden_${fixture}_${dtype}_cuda PROPERTIES LABELS "golden;gpu" SKIP_RETURN_CODE 77
                             FIXTURES_REQUIRED blob_${fixture}_${dtype})
      endif()
    endforeach()
  endforeach()
endif()
