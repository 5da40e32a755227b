#!/usr/bin/env bash
# budget: 420
# scripts/stages/50-deb.sh — the packages install and run (label package; docs/jetson.md, "Packaging"):
#   1. cpack builds the amd64 .deb of the CPU build ($EM_PKG_BUILD_DIR if set, else build/cpu when CI's first stage
#      made it, else build/pkg-amd64);
#      its control fields (Architecture, Depends) and its files (library, header, CMake and pkg-config files, the
#      tools, the bundled model) are checked;
#   2. it is installed into a scratch root with dpkg -x (no root needed) and the em-generate in it runs the model in
#      it, printing the same text as the build tree's em-generate on the same prompt; a consumer program compiles
#      and links against the unpacked library through its pkg-config file, and runs;
#   3. the deployment image (target deploy-image: a rootfs overlay tarball) is unpacked into a second scratch root:
#      /opt/edgemamba with the packed model, the config and the systemd units are there, the units pass
#      systemd-analyze verify where it is installed, and the launcher the unit starts answers a message read from
#      stdin (as the socket unit would pass it) with the unpacked config.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
jobs=$(nproc 2>/dev/null || echo 2)
for t in cpack dpkg-deb; do
  command -v $t >/dev/null || { echo "SKIP deb: no $t"; exit 0; }
done
if [ -n "${EM_PKG_BUILD_DIR:-}" ]; then
  B=$(cd "$(dirname "$EM_PKG_BUILD_DIR")" && pwd)/$(basename "$EM_PKG_BUILD_DIR")
  cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DEM_CUDA=OFF -DEM_WERROR=ON -DBUILD_TESTING=OFF >/dev/null
elif [ -f build/cpu/CMakeCache.txt ]; then
  B=$root/build/cpu
else
  B=$root/build/pkg-amd64
  cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DEM_CUDA=OFF -DEM_WERROR=ON -DBUILD_TESTING=OFF >/dev/null
fi
cmake --build "$B" -j "$jobs" >/dev/null
W=$root/build/pkg-check && rm -rf "$W" && mkdir -p "$W"
arch=$(dpkg --print-architecture)
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# ---- 1. the .deb -------------------------------------------------------------------------------------------
rm -f "$B"/edgemamba_*.deb
(cd "$B" && cpack -G DEB >/dev/null)
deb=$(ls "$B"/edgemamba_*_"$arch".deb)
echo "package: $(basename "$deb"), $(du -k "$deb" | cut -f1) KB"
dpkg-deb -f "$deb" Package Version Architecture Depends | sed 's/^/  /'
[ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || bad "Architecture is not $arch"
dpkg-deb -f "$deb" Depends | grep -q libsentencepiece0 || bad "Depends does not name libsentencepiece0"

# ---- 2. installed into a scratch root ----------------------------------------------------------------------
R=$W/root && dpkg-deb -x "$deb" "$R"
for f in usr/bin/em-generate usr/bin/em-chat usr/bin/em-pack usr/bin/em-plan usr/bin/em-bench usr/include/edgemamba.h \
         usr/share/edgemamba/models/hybrid.emb; do
  [ -e "$R/$f" ] || bad "the package has no /$f"
done
lib=$(dirname "$(find "$R" -name 'libedgemamba.so' | head -1)")
pc=$(dirname "$(find "$R" -name edgemamba.pc | head -1)")
[ -e "$lib/libedgemamba.a" ] || bad "no static library beside libedgemamba.so"
[ -e "$lib/cmake/edgemamba/edgemambaConfig.cmake" ] || bad "no CMake package in $lib/cmake/edgemamba"
prompt="It is a truth universally acknowledged, that"
got=$("$R/usr/bin/em-generate" -m "$R/usr/share/edgemamba/models/hybrid.emb" -p "$prompt" -n 24 2>/dev/null)
want=$("$B/examples/em-generate" -m "$B/bundled/hybrid.emb" -p "$prompt" -n 24 2>/dev/null)
echo "em-generate from the package: $prompt$got"
[ -n "$got" ] && [ "$got" = "$want" ] || bad "the packaged em-generate printed '$got', the build's '$want'"
"$R/usr/bin/em-plan" -m "$R/usr/share/edgemamba/models/hybrid.emb" -d orin-nano-8gb | tail -1
cat >"$W/consumer.c" <<'C'
#include <edgemamba.h>
#include <stdio.h>
int main(int argc, char **argv) { /* opens the packaged model and reports its layers */
    em_model *m = NULL;
    if (argc < 2 || em_model_open(argv[1], NULL, &m) != EM_OK) { fprintf(stderr, "%s\n", em_last_error()); return 1; }
    em_model_info info;
    em_model_get_info(m, &info);
    printf("edgemamba %s: %s, %u layers\n", em_version(), info.name, info.n_layer);
    em_model_close(m);
    return em_version_number() == EM_VERSION_NUMBER ? 0 : 1;
}
C
cc "$W/consumer.c" $(PKG_CONFIG_PATH=$pc pkg-config --cflags --libs edgemamba) -o "$W/consumer"
LD_LIBRARY_PATH=$lib "$W/consumer" "$R/usr/share/edgemamba/models/hybrid.emb" || bad "the consumer program failed"

# ---- 3. the deployment image -----------------------------------------------------------------------------------
cmake --build "$B" --target deploy-image >/dev/null
img=$(ls "$B"/edgemamba-rootfs-*-"$arch".tar.gz)
echo "deployment image: $(basename "$img"), $(du -k "$img" | cut -f1) KB"
tar -tzvf "$img" | awk '{print $2}' | sort -u | grep -qvx "0/0" && bad "the image has files not owned by root (0/0)"
I=$W/image && mkdir -p "$I" && tar -xzf "$img" -C "$I"
for f in opt/edgemamba/bin/em-chat opt/edgemamba/bin/edgemamba-assistant opt/edgemamba/share/edgemamba/models/hybrid.emb \
         etc/edgemamba/assistant.conf etc/systemd/system/edgemamba-assistant.socket \
         etc/systemd/system/edgemamba-assistant@.service; do
  [ -e "$I/$f" ] || bad "the image has no /$f"
done
if command -v systemd-analyze >/dev/null; then
  # --root resolves ExecStart in the unpacked tree; only the units' own problems count here
  if v=$(systemd-analyze verify --root="$I" "$I"/etc/systemd/system/edgemamba-assistant.socket 2>&1); then
    echo "systemd-analyze verify: the units are valid"
  elif echo "$v" | grep -qiE "unknown (key|section)|invalid|failed to parse|bad"; then
    echo "$v"; bad "systemd-analyze verify rejects the units"
  else
    echo "systemd-analyze verify could not run here (no systemd as PID 1?): $(echo "$v" | head -2 | tr '\n' ' ')"
  fi
fi
ans=$(printf 'Hello there\n/quit\n' | EM_ROOT=$I/opt/edgemamba EM_ASSISTANT_CONF=$I/etc/edgemamba/assistant.conf \
      "$I/opt/edgemamba/bin/edgemamba-assistant" 2>"$W/assistant.err" | tr -d '\0') || bad "the assistant exited $?"
echo "assistant from the image answered: $(echo "$ans" | head -c 160 | tr '\n' ' ')"
[ "$(echo "$ans" | wc -c)" -gt 20 ] || { cat "$W/assistant.err"; bad "the assistant printed nothing"; }
[ $fail -eq 0 ] || exit 1
echo "deb + image: ok"
