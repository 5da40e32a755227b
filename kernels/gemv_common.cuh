/*
 * gemv_common.cuh — device helpers the decode-step kernels share (linear.cu, linear_i8.cu, ssm.cu): programmatic
 * dependent launch, the warp sum, and the gated norm's group scales that the fused out_proj computes in its
 * prologue; on the host, the environment switches they read once. Header-only, included by .cu files only.
 */
#ifndef EM_GEMV_COMMON_CUH
#define EM_GEMV_COMMON_CUH

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>

/* Host: an environment switch read once (tuning and diagnosis; thread-safe, no allocation): 1 + the index of
 * getenv(name) among values[0..n), 0 when unset or anything else. cache starts at -1. */
static inline int em_env_once(const char *name, const char *const *values, int n, std::atomic<int> *cache) {
    int v = cache->load(std::memory_order_relaxed);
    if (v < 0) {
        const char *e = getenv(name);
        v = 0;
        for (int i = 0; e && i < n; i++)
            if (strcmp(e, values[i]) == 0) {
                v = i + 1;
                break;
            }
        cache->store(v, std::memory_order_relaxed);
    }
    return v;
}

/* EM_PDL_TRIGGER=late (docs/gpu.md): the fused GEMVs let their dependents launch only after their main loop instead
 * of at entry. Tuning, read once. */
static inline int em_pdl_trigger_late() {
    static const char *const values[] = { "late" };
    static std::atomic<int> cache{-1};
    return em_env_once("EM_PDL_TRIGGER", values, 1, &cache);
}

/* Programmatic dependent launch (sm_90+; no-ops when the grid was launched without the attribute). wait: returns once
 * the preceding kernel has completed and its writes are visible. trigger: lets a dependent grid launched with the
 * attribute start once every block of this one has started (it still waits for our completion itself). */
static __device__ __forceinline__ void em_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
static __device__ __forceinline__ void em_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* The MLP activations (em_mlp_act in runtime/blob.h: 1 GELU, exact erf; 2 relu^2; 3 SiLU; the .cu files that use
 * them static_assert the numbering), in em_ref_act's f32 operations. ACT 0: none. */
template <int ACT> static __device__ __forceinline__ float em_act_f(float v) {
    if constexpr (ACT == 1) return 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f));
    else if constexpr (ACT == 2) return v > 0.0f ? v * v : 0.0f;
    else if constexpr (ACT == 3) return v / (1.0f + expf(-v));
    else return v;
}
/* The same with the activation chosen at run time (a uniform branch in a GEMV's epilogue). */
static __device__ __forceinline__ float em_act_rt(uint32_t act, float v) {
    switch (act) {
    case 1: return em_act_f<1>(v);
    case 2: return em_act_f<2>(v);
    case 3: return em_act_f<3>(v);
    default: return v;
    }
}

/* Sum over the warp, left in every lane. */
static __device__ __forceinline__ float em_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* The gated norm's group scales, once a block (the fused out_proj's prologue): sc[g] = rsqrt(sum of group g's hpg
 * per-head sums of squares * inv_group + eps). All threads load the per-head sums at once (one memory round trip)
 * into `heads`, then one thread a group adds its heads in order (deterministic). Every thread of the block must call
 * it (two barriers). */
static __device__ __forceinline__ void em_group_scales(float *sc, float *heads, const float *sumsq, uint32_t n_groups,
                                                       uint32_t hpg, float inv_group, float eps) {
    const uint32_t nh = n_groups * hpg;
    for (uint32_t i = threadIdx.x; i < nh; i += blockDim.x) heads[i] = sumsq[i];
    __syncthreads();
    for (uint32_t gi = threadIdx.x; gi < n_groups; gi += blockDim.x) {
        float ssg = 0.0f;
        for (uint32_t h = 0; h < hpg; h++) ssg += heads[gi * hpg + h];
        sc[gi] = rsqrtf(ssg * inv_group + eps);
    }
    __syncthreads();
}

#endif /* EM_GEMV_COMMON_CUH */
