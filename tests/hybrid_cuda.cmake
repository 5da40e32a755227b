# The hybrid's attention and MLP layers on CUDA (issue 9; docs/hybrid-cuda.md). Label unit (CPU, always built): the
# bf16-KV-cache attention twin against the f32 twin. Label gpu (CUDA builds only; exit 77 = Skipped without a device,
# as tests/gpu.cmake): the kernels against their twins; `--perf` (not run by ctest) times decode attention at 512,
# 4K and 32K tokens of context on the hybrid 8B shape and the 8B MLP, against the read bandwidth measured in the run.
em_add_test(NAME test_attention_bf16_ref SOURCES test_attention_bf16_ref.c LABELS unit)
if(EM_HAVE_CUDA)
  foreach(op attention mlp)
    em_add_test(NAME test_${op}_cuda SOURCES test_${op}_cuda.c gpu_test.c gpu_bw.cu LABELS gpu LIBS CUDA::cudart)
  endforeach()
endif()
