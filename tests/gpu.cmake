# GPU kernels against their float32 C twins (label gpu). Built only when CUDA is (EM_HAVE_CUDA); each test
# exits 77 without a device, which ctest shows as "***Skipped", never as a failure. Each test's --perf mode
# (not run by ctest) times the model's big shapes against bandwidth measured in the same run; scripts/gpu-check.sh
# runs both on the GPU machine. gpu_bw.cu: the read-only roofline kernel the --perf modes share; gpu_test.c: the
# Mamba-2 step tests' shared setup, comparison and timers.
if(EM_HAVE_CUDA)
  em_add_test(NAME test_linear_cuda SOURCES test_linear_cuda.c gpu_bw.cu LABELS gpu LIBS CUDA::cudart)
  foreach(op embed rmsnorm gated_norm conv1d ssm argmax fused aux_fused)
    em_add_test(NAME test_${op}_cuda SOURCES test_${op}_cuda.c gpu_test.c gpu_bw.cu LABELS gpu LIBS CUDA::cudart)
  endforeach()
endif()
