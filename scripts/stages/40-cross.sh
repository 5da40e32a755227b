#!/usr/bin/env bash
# budget: 720
# scripts/stages/40-cross.sh — what can be proved about the Jetson builds on an x86_64 machine without a GPU
# (label cross; docs/jetson.md):
#   1. the CPU build cross-compiled for aarch64 (preset aarch64-cpu: Debian's gcc-aarch64-linux-gnu and arm64
#      multiarch -dev packages) with the whole CPU test suite run as aarch64 code under qemu-aarch64 (ctest puts
#      CMAKE_CROSSCOMPILING_EMULATOR in front of every test program; tests/cross.cmake names the few tests that
#      cannot run under user-mode emulation, and why);
#   2. the arm64 .deb (cpack) unpacked into a scratch root (dpkg -x) and its em-generate run under qemu on the
#      packaged model: it must print the same greedy tokens as the build tree's em-generate;
#   3. every CUDA kernel (kernels/*.cu) compiled for sm_87 (Orin) and sm_110 (Thor) by the local nvcc, and a
#      check that both machine codes are in each object: cuobjdump --list-elf where the toolkit ships it, else
#      the cubins embedded in the object's .nv_fatbin section are found and their SM read from the ELF header
#      (the decoding is first validated on reference cubins that the same nvcc builds for sm_87/90/110).
# Parts that cannot run here print SKIP and the stage goes on; with nothing runnable it exits 0.
# EM_CROSS_PARTS="cpu cuda" (default both) runs a part alone while working on it.
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=$(nproc 2>/dev/null || echo 2)
root=$PWD
t0=$SECONDS
note() { echo "[cross $((SECONDS - t0))s] $*"; }

parts=" ${EM_CROSS_PARTS:-cpu cuda} "
# ---- 1. aarch64 CPU build + the CPU suite under qemu -------------------------------------------------------
if [[ $parts != *" cpu "* ]]; then
  echo "SKIP cross aarch64: not in EM_CROSS_PARTS"
elif ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v aarch64-linux-gnu-g++ >/dev/null; then
  echo "SKIP cross aarch64: no aarch64-linux-gnu-gcc/g++ (apt-get install $(tr '\n' ' ' <scripts/deps-debian-cross.txt))"
elif ! command -v qemu-aarch64 >/dev/null && ! command -v qemu-aarch64-static >/dev/null; then
  echo "SKIP cross aarch64: no qemu-aarch64 (apt-get install qemu-user)"
elif [ ! -e /usr/lib/aarch64-linux-gnu/pkgconfig/libxxhash.pc ]; then
  echo "SKIP cross aarch64: the arm64 -dev packages are not installed (dpkg --add-architecture arm64;" \
       "apt-get install $(sed 's/$/:arm64/' scripts/arm64-deps.txt | tr '\n' ' '))"
else
  # SentencePiece's arm64 packages are not co-installable with the amd64 ones: unpack them into an overlay.
  ov=$root/build/cross-overlay
  if [ ! -e "$ov/usr/lib/aarch64-linux-gnu/pkgconfig/sentencepiece.pc" ]; then
    note "unpacking libsentencepiece0:arm64 + libsentencepiece-dev:arm64 into $ov"
    mkdir -p "$ov/debs"
    (cd "$ov/debs" && apt-get download libsentencepiece0:arm64 libsentencepiece-dev:arm64 >/dev/null 2>&1)
    for d in "$ov"/debs/*.deb; do dpkg-deb -x "$d" "$ov"; done
    sed -i "s|^prefix=.*|prefix=$ov/usr|" "$ov/usr/lib/aarch64-linux-gnu/pkgconfig/sentencepiece.pc"
  fi
  note "configure + build (preset aarch64-cpu)"
  cmake --preset aarch64-cpu >/dev/null
  cmake --build --preset aarch64-cpu -j "$jobs" >/dev/null
  note "ctest under qemu-aarch64 (all labels)"
  OMP_WAIT_POLICY=passive ctest --preset aarch64-cpu -j "$jobs"
  note "ctest done"

  # ---- 2. the arm64 .deb: unpack, run the packaged em-generate on the packaged model under qemu --------------
  B=$root/build/cross-aarch64
  rm -f "$B"/edgemamba_*_arm64.deb
  (cd "$B" && cpack -G DEB >/dev/null)
  deb=$(ls "$B"/edgemamba_*_arm64.deb)
  dpkg-deb -f "$deb" Architecture | grep -qx arm64 || { echo "FAIL: $deb is not Architecture: arm64"; exit 1; }
  sr=$B/deb-root && rm -rf "$sr" && dpkg-deb -x "$deb" "$sr"
  for f in usr/bin/em-generate usr/bin/em-chat usr/bin/em-pack usr/bin/em-plan usr/include/edgemamba.h \
           usr/share/edgemamba/models/hybrid.emb; do
    [ -e "$sr/$f" ] || { echo "FAIL: $deb has no /$f"; exit 1; }
  done
  [ -n "$(find "$sr" -name 'libedgemamba.so.*' -print -quit)" ] || { echo "FAIL: no libedgemamba.so in $deb"; exit 1; }
  qemu=$(command -v qemu-aarch64 || command -v qemu-aarch64-static)
  # em-generate's dependencies are the arm64 system libraries (+ the SentencePiece overlay, which the board
  # gets from libsentencepiece0): LD_LIBRARY_PATH stands in for that package here.
  gen() { QEMU_SET_ENV=LD_LIBRARY_PATH=$ov/usr/lib/aarch64-linux-gnu "$qemu" "$@"; }
  out=$(gen "$sr/usr/bin/em-generate" -m "$sr/usr/share/edgemamba/models/hybrid.emb" --ids 1,2,3 -n 16)
  want=$(gen "$B/examples/em-generate" -m "$B/bundled/hybrid.emb" --ids 1,2,3 -n 16)
  [ -n "$out" ] && [ "$out" = "$want" ] || { echo "FAIL: the packaged em-generate printed '$out', the build's '$want'"; exit 1; }
  gen "$sr/usr/bin/em-plan" -m "$sr/usr/share/edgemamba/models/hybrid.emb" -d agx-orin-64gb | tail -1
  note "arm64 .deb: $(basename "$deb") ($(du -k "$deb" | cut -f1) KB) unpacked, em-generate from it: $out"
fi

# ---- 3. CUDA kernels for sm_87 and sm_110 ---------------------------------------------------------------------
nvcc=$(command -v nvcc || true)
[ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
if [[ $parts != *" cuda "* ]]; then
  echo "SKIP cross cuda: not in EM_CROSS_PARTS"
elif [ -z "$nvcc" ]; then
  echo "SKIP cross cuda: no nvcc"
elif ! "$nvcc" --list-gpu-arch 2>/dev/null | grep -qx compute_110; then
  echo "SKIP cross cuda: $("$nvcc" --version | tail -1) does not know sm_110 (CUDA >= 13.0 does)"
elif ! command -v python3 >/dev/null && ! command -v cuobjdump >/dev/null; then
  echo "SKIP cross cuda: neither cuobjdump nor python3 to read the objects"
else
  export PATH=$(dirname "$nvcc"):$PATH
  C=$root/build/cross-cuda
  note "CUDA kernels for sm_87 + sm_110 ($("$nvcc" --version | tail -1))"
  cmake -S . -B "$C" -DCMAKE_BUILD_TYPE=Release -DEM_CUDA=ON -DEM_CUDA_ARCHITECTURES="87;110" -DEM_WERROR=ON \
        -DBUILD_TESTING=OFF -DEM_BUNDLE_MODEL=OFF >/dev/null
  objs=()
  for f in kernels/*.cu; do objs+=("kernels/$(basename "$f" .cu).o"); done
  make -C "$C" -j "$jobs" "${objs[@]}" >/dev/null
  cubins=$C/sass-ref && mkdir -p "$cubins"
  printf '__global__ void k(float *x) { x[threadIdx.x] *= 2.0f; }\n' >"$cubins/k.cu"
  for a in 87 90 110; do "$nvcc" -cubin -arch=sm_$a -o "$cubins/k$a.cubin" "$cubins/k.cu"; done
  fail=0
  for f in kernels/*.cu; do
    o=$C/CMakeFiles/em_objects.dir/kernels/$(basename "$f").o
    [ -f "$o" ] || { echo "FAIL: no object for $f"; fail=1; continue; }
    if command -v cuobjdump >/dev/null; then
      sms=$(cuobjdump --list-elf "$o" | sed -n 's/.*\.sm_\([0-9]*\)[a-z]*\.cubin.*/\1/p' | sort -un | tr '\n' ' ')
    else
      sms=$(python3 - "$o" "$cubins" <<'PY'
import struct, sys
def sm_of(b, i):  # SM of the CUDA ELF at b[i:] (e_machine 190 = EM_CUDA); ABI >= 8 keeps it in e_flags bits 8..15
    if struct.unpack_from('<H', b, i + 18)[0] != 190: return None
    flags = struct.unpack_from('<I', b, i + 48)[0]
    return (flags >> 8) & 0xff if b[i + 8] >= 8 else flags & 0xff
for a in (87, 90, 110):  # the decoding, checked on cubins this nvcc built for a known SM
    ref = open(f"{sys.argv[2]}/k{a}.cubin", "rb").read()
    if sm_of(ref, 0) != a: sys.exit(f"cannot decode the SM of a reference sm_{a} cubin (got {sm_of(ref, 0)})")
obj = open(sys.argv[1], "rb").read()
e_shoff, = struct.unpack_from('<Q', obj, 40); e_shentsize, e_shnum, e_shstrndx = struct.unpack_from('<HHH', obj, 58)
def sec(k): return struct.unpack_from('<IIQQQQ', obj, e_shoff + k * e_shentsize)
strtab = sec(e_shstrndx)
names = {obj[strtab[4] + s[0]:obj.index(b'\0', strtab[4] + s[0])].decode(): s for s in map(sec, range(e_shnum))}
s = names.get('.nv_fatbin')
if not s: sys.exit("no .nv_fatbin section")
fat = obj[s[4]:s[4] + s[5]]
sms, i = set(), fat.find(b'\x7fELF')
while i >= 0:
    sm = sm_of(fat, i)
    if sm: sms.add(sm)
    i = fat.find(b'\x7fELF', i + 1)
print(' '.join(map(str, sorted(sms))))
PY
)
    fi
    if [[ " $sms " == *" 87 "* && " $sms " == *" 110 "* ]]; then
      printf '  %-16s SASS for' "$(basename "$f"):"; for s in $sms; do printf ' sm_%s' "$s"; done; echo
    else
      echo "FAIL: $(basename "$f") object holds SASS for '$sms', not both sm_87 and sm_110 (a fatbin built with"\
           "-Xfatbin=-compress-all hides its cubins from this check: use cuobjdump then)"; fail=1
    fi
  done
  [ $fail -eq 0 ] || exit 1
  note "every kernel carries sm_87 and sm_110 machine code"
fi
note "done"
