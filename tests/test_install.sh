#!/usr/bin/env bash
# test_install.sh — proves the installed library is usable as the README says: `cmake --install` into a scratch
# prefix, then a consumer program built against it twice — through CMake's find_package(edgemamba) and through
# pkg-config — links and runs (it prints the library's version and opens nothing).
#
#   test_install.sh CMAKE_COMMAND BUILD_DIR WORK_DIR
set -eu
CMAKE=$1 BUILD=$2 WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK/consumer"
"$CMAKE" --install "$BUILD" --prefix "$WORK/prefix" >/dev/null
cat >"$WORK/consumer/main.c" <<'C'
#include <edgemamba.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    em_model *m = NULL;
    em_status s = em_model_open("/nonexistent.emb", NULL, &m); /* a status and a message, not a crash */
    printf("edgemamba %s: %s\n", em_version(), em_status_str(s));
    return (em_version_number() == EM_VERSION_NUMBER && s != EM_OK && m == NULL) ? 0 : 1;
}
C
cat >"$WORK/consumer/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.25)
project(consumer C)
find_package(edgemamba REQUIRED)
add_executable(consumer main.c)
target_link_libraries(consumer edgemamba::edgemamba)
CM
"$CMAKE" -S "$WORK/consumer" -B "$WORK/consumer/build" -DCMAKE_PREFIX_PATH="$WORK/prefix" >/dev/null
"$CMAKE" --build "$WORK/consumer/build" >/dev/null
lib=$(dirname "$(find "$WORK/prefix" -name 'libedgemamba.so' | head -1)")
LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$WORK/consumer/build/consumer"
pc=$(dirname "$(find "$WORK/prefix" -name edgemamba.pc | head -1)")
cc "$WORK/consumer/main.c" $(PKG_CONFIG_PATH=$pc pkg-config --cflags --libs edgemamba) -o "$WORK/consumer/pc"
LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$WORK/consumer/pc"
echo "test_install: 1 passed, 0 failed"
