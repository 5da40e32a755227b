# Golden tests (label golden): em-pack packs each HF fixture (f32 and bf16), then test_golden compares the
# CPU backend's logits and greedy ids with HF's (tools/goldens/make_goldens.py; tests/data/README.md).
if(TARGET em-pack)
  add_executable(test_golden test_golden.c)
  target_link_libraries(test_golden PRIVATE em_internal em_testutil em_packlib)
  set(golden_dir ${CMAKE_BINARY_DIR}/golden)
  file(MAKE_DIRECTORY ${golden_dir})
  # the NemotronH hybrids (issue 5): attention + MLP layers (on CUDA since issue 9)
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
      # the same goldens on the CUDA executor (SKIP without a device). Not the hybrid fixtures: their head_dim (16,
      # 24) is not one the CUDA attention kernels take (64, 128); model_golden_hybrid_cuda covers the hybrid there.
      if(EM_HAVE_CUDA AND NOT fixture MATCHES "hybrid")
        # BF16 blobs: 2e-2, the bf16 bound: prompts of more than 8 tokens run the CUDA prompt path (cuBLASLt GEMMs on
        # bf16-rounded activations, the TF32 SSD scan; runtime/cuda_exec.c); measured worst 1.2e-2 on the random
        # tiny fixture's prompt, 2.6e-4 on decode. F32 blobs take the GEMV (fp32 activations): 1e-4 as on the CPU.
        if(dtype STREQUAL "f32")
          set(cuda_tol 1e-4)
        else()
          set(cuda_tol 2e-2)
        endif()
        add_test(NAME golden_${fixture}_${dtype}_cuda COMMAND test_golden ${b} ${g} ${cuda_tol} cuda)
        set_tests_properties(golden_${fixture}_${dtype}_cuda PROPERTIES LABELS "golden;gpu" SKIP_RETURN_CODE 77
                             FIXTURES_REQUIRED blob_${fixture}_${dtype})
      endif()
    endforeach()
  endforeach()
endif()
