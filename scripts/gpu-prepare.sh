#!/usr/bin/env bash
# scripts/gpu-prepare.sh — run HERE (a Debian machine with apt and network) before sending the tree to the GPU
# machine, which has CUDA, cmake and a compiler but no network and none of edgemamba's two libraries.
#
# Downloads (does not install) the Debian packages the build needs into .carry/debs:
#   libxxhash-dev libxxhash0     xxHash (blob checksums; libxxhash.a + headers + .pc)
#   libcjson-dev libcjson1       cJSON (config.json in tools/)
#   pkgconf-bin libpkgconf3      a pkg-config for CMake's FindPkgConfig, in case the GPU image has none
# scripts/gpu-check.sh unpacks them there with `dpkg-deb -x` into .carry/prefix (no root, no dpkg database) and
# points PKG_CONFIG_PATH / CMAKE_PREFIX_PATH / LD_LIBRARY_PATH at it. Then it checks here that the carried set
# is complete by unpacking it into a scratch prefix and asking the carried pkgconf for both libraries.
#
# Usage: scripts/gpu-prepare.sh, then carry .carry/debs (ignored by git) with the run: carry [".carry/debs"]
# Needs: apt-get (no root: `apt-get download` writes to the current folder), dpkg-deb.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(libxxhash-dev libxxhash0 libcjson-dev libcjson1 pkgconf-bin libpkgconf3
      libutf8proc-dev libutf8proc2 libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3)
debs=.carry/debs
rm -rf "$debs"
mkdir -p "$debs"
echo "== downloading ${pkgs[*]} into $debs"
# apt-get download fetches the candidate version of each package for this machine's architecture (amd64,
# which is the GPU machine's too). `apt-get update` first if the lists are stale (needs root).
(cd "$debs" && apt-get download "${pkgs[@]}")
ls -l "$debs"

echo "== checking: unpack into a scratch prefix and resolve both libraries with the carried pkgconf"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$scratch"; done
# The same rewrite gpu-check.sh does: .pc files name /usr; point them into the prefix.
find "$scratch" -name '*.pc' -exec sed -i -E "s#^([A-Za-z_]+)=/usr#\1=$scratch/usr#" {} +
multi=$scratch/usr/lib/x86_64-linux-gnu
LD_LIBRARY_PATH=$multi${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} PKG_CONFIG_PATH=$multi/pkgconfig PKG_CONFIG_LIBDIR='' \
  "$scratch/usr/bin/pkgconf" --cflags --libs libxxhash libcjson
test -f "$multi/libxxhash.a" && test -f "$scratch/usr/include/xxhash.h" && test -f "$scratch/usr/include/cjson/cJSON.h"
echo "== ok: $(find "$debs" -name "*.deb" | wc -l) packages in $debs ($(du -sh "$debs" | cut -f1))"
echo "   carry .carry/debs with the GPU run; there: scripts/gpu-check.sh"
