#!/usr/bin/env bash
# Installs the Debian 12 packages stallscope needs, idempotently: only what is missing, and
# `apt-get update` only when something is. Runs without a terminal (CI, ssh -T, pipes).
#   scripts/setup.sh          build + demo packages
#   scripts/setup.sh --test   also what the test suite needs (prometheus server and promtool,
#                             clang-format, and the compilers of the asan and off presets:
#                             clang 16 with its sanitizer runtimes, clang 14, and lld, the
#                             linker scripts/test.sh uses)
# Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(build-essential cmake pkg-config prometheus-cpp-dev libboost1.81-dev libcivetweb-dev
          libfmt-dev catch2 libbenchmark-dev libssl-dev zlib1g-dev libyaml-cpp-dev libcrypt-dev
          curl ca-certificates)
case "${1:-}" in
  "") ;;
  --test) packages+=(prometheus clang-format chromium openssl apache2-utils valgrind clang-14
                     clang-16 libclang-rt-16-dev lld) ;;
  *)
    echo "usage: scripts/setup.sh [--test]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "setup: missing packages: ${missing[*]}; this script needs apt-get (Debian 12)" >&2
  exit 1
fi
as_root=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "setup: missing packages: ${missing[*]}; run as root (or install them yourself)" >&2
    exit 1
  fi
fi

echo "setup: installing ${missing[*]}"
# No prompts, no progress bars, no waiting on a terminal; wait for a running apt (a fresh machine
# often has unattended-upgrades going) instead of failing on its lock.
apt_opts=(-y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=600
          -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
apt_get() {
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get "${apt_opts[@]}" \
    "$@" </dev/null
}

# The prometheus package would start a system-wide server on :9090 from its postinst; the tests
# start their own on a private port and storage. policy-rc.d (honoured by invoke-rc.d and
# deb-systemd-invoke) keeps it from starting during the install; afterwards it is disabled, so
# it does not start at the next boot either.
policy=/usr/sbin/policy-rc.d
created_policy=0
remove_policy() {
  if ((created_policy)); then
    "${as_root[@]}" rm -f "$policy"
  fi
}
trap remove_policy EXIT
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\n# Written by stallscope scripts/setup.sh during apt-get install.\nexit 101\n' |
    "${as_root[@]}" tee "$policy" >/dev/null
  created_policy=1
  "${as_root[@]}" chmod 755 "$policy"
fi

apt_get update -qq
apt_get install --no-install-recommends "${missing[@]}"

for p in "${missing[@]}"; do
  if [[ $p == prometheus ]]; then
    if [[ -d /run/systemd/system ]]; then
      "${as_root[@]}" systemctl disable --now --quiet prometheus.service || true
    else
      "${as_root[@]}" deb-systemd-helper disable prometheus.service >/dev/null 2>&1 || true
      "${as_root[@]}" update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
    echo "setup: the prometheus package's system service is disabled (tests run their own)"
  fi
done
echo "setup: done"
