# toolchain/jetson-common.cmake — what jetson-orin.cmake and jetson-thor.cmake share (included by them; not a
# toolchain on its own). Inputs: EM_JETSON_ARCH, EM_JETSON_NAME; cache options below.
#
# The layout of NVIDIA's cross packages, as NVIDIA's own toolchains use it (cuda-samples
# cmake/toolchains/toolchain-aarch64-linux.cmake; TensorRT-Edge-LLM cmake/aarch64_linux_toolchain.cmake):
#   $EM_JETSON_CUDA/targets/aarch64-linux   CUDA <= 12.x for Tegra (JetPack 6: Orin)
#   $EM_JETSON_CUDA/targets/sbsa-linux      CUDA >= 13.0 (JetPack 7: Thor, and Orin from 7.2)
# and inside a sysroot the same under $EM_JETSON_SYSROOT/usr/local/cuda. libcuda.so is never linked at build
# time (the runtime loads the driver); cudart and cuBLASLt are, from the target folder.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

set(EM_JETSON_SYSROOT "" CACHE PATH "Target root filesystem (the board's, or an L4T sample rootfs); empty: multiarch host")
set(EM_JETSON_CUDA "/usr/local/cuda" CACHE PATH "Host CUDA toolkit (x86_64 nvcc) with the aarch64/sbsa cross target")
set(EM_CROSS_OVERLAY "" CACHE PATH "Multiarch host only: unpacked arm64 packages (SentencePiece), as aarch64-cpu uses")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES EM_JETSON_SYSROOT EM_JETSON_CUDA EM_JETSON_ARCH EM_CROSS_OVERLAY)

if(EM_JETSON_SYSROOT)
  set(CMAKE_SYSROOT ${EM_JETSON_SYSROOT})
  set(CMAKE_FIND_ROOT_PATH ${EM_JETSON_SYSROOT})
  # the board's libraries live in multiarch and NVIDIA folders; the linker must follow their DT_NEEDED there
  foreach(d usr/lib/aarch64-linux-gnu usr/lib/aarch64-linux-gnu/nvidia usr/lib/aarch64-linux-gnu/tegra)
    string(APPEND CMAKE_EXE_LINKER_FLAGS_INIT " -Wl,-rpath-link,${EM_JETSON_SYSROOT}/${d}")
    string(APPEND CMAKE_SHARED_LINKER_FLAGS_INIT " -Wl,-rpath-link,${EM_JETSON_SYSROOT}/${d}")
  endforeach()
  set(ENV{PKG_CONFIG_SYSROOT_DIR} ${EM_JETSON_SYSROOT})
  set(ENV{PKG_CONFIG_LIBDIR} "${EM_JETSON_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${EM_JETSON_SYSROOT}/usr/share/pkgconfig")
elseif(EM_CROSS_OVERLAY)
  set(ENV{PKG_CONFIG_LIBDIR} "${EM_CROSS_OVERLAY}/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
else()
  set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
endif()
set(ENV{PKG_CONFIG_PATH} "")

# nvcc runs on the host and compiles device code for EM_JETSON_ARCH; its host side goes through the cross g++.
set(CMAKE_CUDA_COMPILER ${EM_JETSON_CUDA}/bin/nvcc)
set(CMAKE_CUDA_HOST_COMPILER ${CMAKE_CXX_COMPILER})
set(CMAKE_CUDA_ARCHITECTURES ${EM_JETSON_ARCH})
set(EM_CUDA_ARCHITECTURES ${EM_JETSON_ARCH} CACHE STRING "CUDA architectures when EM_CUDA is on")

# Where FindCUDAToolkit looks for the target's cudart/cuBLASLt: the sysroot's toolkit first, then the host
# toolkit's cross target folder (aarch64-linux for CUDA 12 Tegra, sbsa-linux for CUDA 13).
foreach(root ${EM_JETSON_SYSROOT}/usr/local/cuda ${EM_JETSON_CUDA})
  foreach(t aarch64-linux sbsa-linux)
    if(NOT EM_JETSON_CUDA_TARGET AND EXISTS ${root}/targets/${t}/lib)
      set(EM_JETSON_CUDA_TARGET ${root}/targets/${t})
    endif()
  endforeach()
endforeach()
if(EM_JETSON_CUDA_TARGET)
  set(CUDAToolkit_TARGET_DIR ${EM_JETSON_CUDA_TARGET})
  list(APPEND CMAKE_FIND_ROOT_PATH ${EM_JETSON_CUDA_TARGET})
  # nvcc's own include and library paths: the target folder, not the host's targets/x86_64-linux
  get_filename_component(_em_t ${EM_JETSON_CUDA_TARGET} NAME)
  set(CMAKE_CUDA_FLAGS_INIT "-ccbin ${CMAKE_CXX_COMPILER} --target-directory ${_em_t}")
elseif(NOT CMAKE_IN_TRY_COMPILE AND NOT EM_CUDA STREQUAL "OFF")
  message(WARNING "jetson-${EM_JETSON_NAME}: no aarch64 CUDA libraries found (looked for targets/aarch64-linux and "
                  "targets/sbsa-linux under ${EM_JETSON_SYSROOT}/usr/local/cuda and ${EM_JETSON_CUDA}). Install "
                  "NVIDIA's cuda-cross-aarch64 (JetPack 6) or cuda-cross-sbsa (JetPack 7) package, or pass "
                  "-DEM_JETSON_SYSROOT=<the board's rootfs>; docs/jetson.md. Configure will fail at the CUDA link.")
endif()

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
if(NOT EM_JETSON_SYSROOT)
  # multiarch host: arm64 libraries sit in the host's /usr/lib/aarch64-linux-gnu
  list(APPEND CMAKE_FIND_ROOT_PATH /)
endif()

find_program(EM_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(EM_QEMU_AARCH64) # the CPU tests run under qemu; the gpu tests SKIP there (no device)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${EM_QEMU_AARCH64})
endif()
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE arm64)
