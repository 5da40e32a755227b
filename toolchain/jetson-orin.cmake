# toolchain/jetson-orin.cmake — cross build for Jetson Orin (AGX Orin, Orin NX, Orin Nano: sm_87) from an
# x86_64 host: aarch64-linux-gnu host compiler, the local nvcc for the kernels, and the aarch64 CUDA libraries
# (cudart, cuBLASLt) from NVIDIA's cross packages or from the board's root filesystem. docs/jetson.md.
#
# Which CUDA:
#   JetPack 6.x (L4T r36, Ubuntu 22.04, glibc 2.35): CUDA 12.6. Host: the cuda-cross-aarch64-12-6 package from
#     https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/cross-linux-aarch64/ (installs
#     /usr/local/cuda-12.6/targets/aarch64-linux), plus the same nvcc 12.6 for x86_64.
#   JetPack 7.2 (L4T r39, Ubuntu 24.04, glibc 2.39): CUDA 13.x, one SBSA toolkit for Orin and Thor: the
#     cuda-cross-sbsa-13-x package (targets/sbsa-linux).
# nvcc 12.6 knows sm_87 but not sm_110; nvcc >= 13.0 knows both (sm_101 in 12.8/12.9 was Thor's old name).
#
# Sysroot (recommended): the board's rootfs, e.g. Linux_for_Tegra/rootfs of the matching L4T, or
#   rsync -a jetson:/{lib,usr/lib,usr/include} $SYSROOT/
# with the arm64 -dev packages of scripts/arm64-deps.txt and libsentencepiece-dev installed on the board first.
#
#   cmake --preset jetson-orin -DEM_JETSON_SYSROOT=/path/to/rootfs [-DEM_JETSON_CUDA=/usr/local/cuda-12.6]
set(EM_JETSON_ARCH 87 CACHE STRING "CUDA architectures for the Jetson build")
set(EM_JETSON_NAME orin)
include(${CMAKE_CURRENT_LIST_DIR}/jetson-common.cmake)
