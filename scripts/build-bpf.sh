#!/bin/sh
# Builds Weft's datapath: build/bpf/vmlinux.h from the running kernel's BTF, every bpf/*.c into
# build/bpf/<name>.o (CO-RE), and the loader helper native/weft-bpf.c into build/bin/weft-bpf.
# Idempotent: a target is rebuilt only when one of its inputs is newer. Mounts bpffs if absent.
# Called by scripts/setup.sh; safe to run on its own. Never touches git state.
set -eu

ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
OUT_BPF="$ROOT/build/bpf"
OUT_BIN="$ROOT/build/bin"
BTF=/sys/kernel/btf/vmlinux
BPFFS=/sys/fs/bpf
CLANG=${CLANG:-clang}
BPFTOOL=${BPFTOOL:-bpftool}
CC=${CC:-gcc}

say() { echo "[weft setup] bpf: $*"; }
die() {
  echo "[weft setup] bpf: WEFT_PREREQ_MISSING: $*" >&2
  exit 1
}

# --- prerequisites: name exactly what is missing ---------------------------------------------
command -v "$CLANG" >/dev/null 2>&1 || die "clang not found (apt-get install clang)"
command -v "$BPFTOOL" >/dev/null 2>&1 || die "bpftool not found (apt-get install bpftool)"
command -v "$CC" >/dev/null 2>&1 || die "$CC not found (apt-get install gcc)"
[ -r "$BTF" ] || die "kernel BTF not readable at $BTF (kernel built without CONFIG_DEBUG_INFO_BTF?)"
[ -r /usr/include/bpf/libbpf.h ] && [ -r /usr/include/bpf/bpf_helpers.h ] ||
  die "libbpf headers not found in /usr/include/bpf (apt-get install libbpf-dev)"
[ -r /usr/include/gelf.h ] || die "libelf headers not found (apt-get install libelf-dev)"
[ -r /usr/include/zlib.h ] || die "zlib headers not found (apt-get install zlib1g-dev)"

# --- bpffs: pins live there ------------------------------------------------------------------
if ! mount | grep -q " $BPFFS "; then
  mkdir -p "$BPFFS"
  mount -t bpf bpf "$BPFFS" || die "cannot mount bpffs at $BPFFS (need root)"
  say "mounted bpffs at $BPFFS"
fi

mkdir -p "$OUT_BPF" "$OUT_BIN"

# newer TARGET DEP... : true when TARGET is missing or any DEP is newer than it.
newer() {
  target=$1
  shift
  [ -e "$target" ] || return 0
  for dep in "$@"; do
    [ -e "$dep" ] || continue
    [ "$dep" -nt "$target" ] && return 0
  done
  return 1
}

# --- vmlinux.h: regenerated when the running kernel's BTF changes (new kernel) ---------------
# The kernel release is recorded beside it; /sys files have no useful mtime.
KREL=$(uname -r)
if [ ! -s "$OUT_BPF/vmlinux.h" ] || [ "$(cat "$OUT_BPF/vmlinux.h.kernel" 2>/dev/null || true)" != "$KREL" ]; then
  "$BPFTOOL" btf dump file "$BTF" format c >"$OUT_BPF/vmlinux.h.tmp" ||
    die "bpftool could not dump $BTF"
  mv "$OUT_BPF/vmlinux.h.tmp" "$OUT_BPF/vmlinux.h"
  echo "$KREL" >"$OUT_BPF/vmlinux.h.kernel"
  say "generated vmlinux.h for kernel $KREL"
fi

# --- BPF objects ------------------------------------------------------------------------------
LIB_HEADERS=$(find "$ROOT/bpf/lib" -name '*.h' 2>/dev/null | tr '\n' ' ')
compiled=0
for src in "$ROOT"/bpf/*.c; do
  [ -e "$src" ] || continue
  name=$(basename "$src" .c)
  obj="$OUT_BPF/$name.o"
  # shellcheck disable=SC2086
  if newer "$obj" "$src" "$OUT_BPF/vmlinux.h" $LIB_HEADERS "$0"; then
    "$CLANG" -target bpf -O2 -g -D__TARGET_ARCH_x86 -Wall -Werror \
      -I "$OUT_BPF" -I "$ROOT/bpf/lib" -c "$src" -o "$obj.tmp" ||
      {
        rm -f "$obj.tmp"
        echo "[weft setup] bpf: WEFT_BPF: clang failed on bpf/$name.c" >&2
        exit 1
      }
    mv "$obj.tmp" "$obj"
    say "compiled $name.o"
    compiled=$((compiled + 1))
  fi
done

# --- the loader helper ------------------------------------------------------------------------
helper="$OUT_BIN/weft-bpf"
if newer "$helper" "$ROOT/native/weft-bpf.c" "$0"; then
  "$CC" -O2 -g -Wall -Wextra -Werror -o "$helper.tmp" "$ROOT/native/weft-bpf.c" -lbpf -lelf -lz ||
    {
      rm -f "$helper.tmp"
      echo "[weft setup] bpf: WEFT_BPF: gcc failed on native/weft-bpf.c" >&2
      exit 1
    }
  mv "$helper.tmp" "$helper"
  say "built build/bin/weft-bpf"
  compiled=$((compiled + 1))
fi

[ "$compiled" -eq 0 ] && say "up to date"
exit 0
