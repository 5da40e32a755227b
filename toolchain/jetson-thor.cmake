# toolchain/jetson-thor.cmake — cross build for Jetson Thor (AGX Thor T5000/T4000: sm_110 under CUDA >= 13.0,
# named sm_101 by CUDA 12.8/12.9) from an x86_64 host. docs/jetson.md.
#
# Which CUDA: JetPack 7.x (L4T r38/r39, Ubuntu 24.04, glibc 2.39): CUDA 13.0 (7.0, 7.1) or 13.2 (7.2). Thor is
# SBSA-compliant: the host needs nvcc 13.x for x86_64 and the cuda-cross-sbsa-13-x package from
# https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/cross-linux-sbsa/ (targets/sbsa-linux),
# or the board's rootfs as the sysroot (it carries /usr/local/cuda/targets/sbsa-linux).
# A CUDA 12.8/12.9 toolkit: pass -DEM_JETSON_ARCH=101.
#
#   cmake --preset jetson-thor -DEM_JETSON_SYSROOT=/path/to/rootfs [-DEM_JETSON_CUDA=/usr/local/cuda-13.0]
set(EM_JETSON_ARCH 110 CACHE STRING "CUDA architectures for the Jetson build")
set(EM_JETSON_NAME thor)
include(${CMAKE_CURRENT_LIST_DIR}/jetson-common.cmake)
