# toolchain/aarch64-linux-gnu.cmake — the CPU-only aarch64 cross build on a Debian/Ubuntu x86_64 host, with the
# distribution's cross compiler and its arm64 multiarch -dev packages (no sysroot: multiarch puts the arm64
# headers and libraries beside the host's, in /usr/{include,lib}/aarch64-linux-gnu). What CI's `cross` stage
# builds and runs under qemu-aarch64 (scripts/stages/40-cross.sh; docs/jetson.md).
#
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user $(sed 's/$/:arm64/' scripts/arm64-deps.txt)
#   cmake --preset aarch64-cpu && cmake --build --preset aarch64-cpu && ctest --preset aarch64-cpu
#
# SentencePiece's two packages are not "Multi-Arch: same": installing libsentencepiece-dev:arm64 REMOVES the
# amd64 one the native build needs. So they are unpacked (apt-get download + dpkg -x, no root) into an overlay
# folder, named by EM_CROSS_OVERLAY (40-cross.sh does this; its .pc prefix is rewritten to the overlay).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(EM_CROSS_TRIPLE aarch64-linux-gnu CACHE STRING "GNU triple of the cross compiler")
set(CMAKE_C_COMPILER ${EM_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${EM_CROSS_TRIPLE}-g++)

set(EM_CROSS_OVERLAY "" CACHE PATH "Folder with unpacked arm64 packages that cannot be co-installed (SentencePiece)")
# try_compile re-reads this file in the same process: hand it the overlay, or it would reset the env below
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES EM_CROSS_OVERLAY EM_CROSS_TRIPLE)
# pkg-config sees only arm64 .pc files (never the host's /usr/lib/x86_64-linux-gnu/pkgconfig).
set(_em_pc /usr/lib/${EM_CROSS_TRIPLE}/pkgconfig /usr/share/pkgconfig)
if(EM_CROSS_OVERLAY)
  list(PREPEND _em_pc ${EM_CROSS_OVERLAY}/usr/lib/${EM_CROSS_TRIPLE}/pkgconfig)
endif()
list(JOIN _em_pc ":" _em_pc)
set(ENV{PKG_CONFIG_LIBDIR} "${_em_pc}")
set(ENV{PKG_CONFIG_PATH} "")

# Run target programs (ctest, and the packaging step that packs the bundled model) through user-mode qemu.
find_program(EM_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(EM_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${EM_QEMU_AARCH64})
endif()

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)

# .deb architecture for CPack (cmake/packaging.cmake reads it)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE arm64)
