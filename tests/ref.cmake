# The float32 C twins (kernels/ref/) against independent double-precision truth; `test_ref_ops --perf` times
# em_ref_linear (not run by ctest).
em_add_test(NAME test_ref_ops SOURCES test_ref_ops.c LABELS unit)
# The fused decode step (norm_linear / ssm with gate / gated_linear) equals the six-op step, on the twins.
em_add_test(NAME test_ref_fused SOURCES test_ref_fused.c LABELS unit)
