/*
 * gpu_bw.cu — the tests' name for the roofline reference pass, which lives in the library
 * (kernels/bandwidth.cu, em_cuda_read_pass) so that em-bench measures with the same kernel.
 */
#include <stddef.h>

extern "C" int em_cuda_read_pass(const void *buf, size_t bytes, unsigned *sink, int sm_count, void *stream);

extern "C" int em_test_read_pass(const void *buf, size_t bytes, unsigned *sink, int sm_count, void *stream) {
    return em_cuda_read_pass(buf, bytes, sink, sm_count, stream);
}
