# Prefill (issue 8; docs/prefill.md): the chunked SSD scan's twin against the sequential scan (label unit); the CUDA
# SSD and cuBLASLt GEMM against their twins (label gpu, SKIP 77 without a device; --perf times the 8B shape); the
# bundled Mamba-2's prefill against HF goldens and against token-by-token decode (label golden; CUDA too when a
# device is present).
em_add_test(NAME test_ssd_ref SOURCES test_ssd_ref.c LABELS unit)
if(EM_HAVE_CUDA)
  foreach(op ssd gemm)
    em_add_test(NAME test_${op}_cuda SOURCES test_${op}_cuda.c gpu_test.c gpu_bw.cu LABELS gpu LIBS CUDA::cudart)
  endforeach()
endif()
# Prefill vs HF goldens (tools/goldens/make_prefill_goldens.py) on the bundled models/mamba2, packed by
# tests/model.cmake (fixture model_mamba2); planned prefill chunk 256, prompts up to 5000 tokens.
if(TARGET em-pack)
  add_executable(test_prefill_golden test_prefill_golden.c)
  target_link_libraries(test_prefill_golden PRIVATE em_internal em_testutil em_packlib m)
  set(prefill_blob ${CMAKE_BINARY_DIR}/models/mamba2.emb)
  set(prefill_golden ${CMAKE_CURRENT_SOURCE_DIR}/data/prefill/mamba2_prefill.safetensors)
  set(prefill_max_l 0)
  # CPU: the token-by-token check (4) up to 1000 tokens (it is exact there: prefill and decode share the twins);
  # sanitizer builds (Debug, no OpenMP, ~20x slower) also skip the 5000-token prompt
  if(EM_SANITIZE)
    set(prefill_max_l 1000)
  endif()
  add_test(NAME prefill_golden_mamba2
           COMMAND test_prefill_golden ${prefill_blob} ${prefill_golden} cpu 1e-4 1e-4 1e-4 256 ${prefill_max_l} 1000)
  set_tests_properties(prefill_golden_mamba2 PROPERTIES LABELS golden TIMEOUT 600 FIXTURES_REQUIRED model_mamba2)
  if(EM_HAVE_CUDA)
    add_test(NAME prefill_golden_mamba2_cuda
             COMMAND test_prefill_golden ${prefill_blob} ${prefill_golden} cuda 2e-2 2e-2 2e-2 256)
    set_tests_properties(prefill_golden_mamba2_cuda PROPERTIES LABELS "golden;gpu" TIMEOUT 600 SKIP_RETURN_CODE 77
                         FIXTURES_REQUIRED model_mamba2)
  endif()
endif()
