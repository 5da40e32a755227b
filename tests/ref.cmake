# The float32 C twins (kernels/ref/) against independent double-precision truth; `test_ref_ops --perf` times
# em_ref_linear (not run by ctest).
em_add_test(NAME test_ref_ops SOURCES test_ref_ops.c LABELS unit)
