#!/usr/bin/env bash
# Installs the Debian 12 packages stallscope needs, idempotently: only what is missing.
#   scripts/setup.sh          build + demo packages
#   scripts/setup.sh --test   also what the test suite needs (prometheus server and promtool)
set -euo pipefail

packages=(build-essential cmake pkg-config prometheus-cpp-dev libboost1.81-dev libcivetweb-dev
          libfmt-dev catch2 libbenchmark-dev curl ca-certificates)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(prometheus clang-format)
fi

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

if [[ $(id -u) -ne 0 ]]; then
  echo "setup: missing packages: ${missing[*]}; run as root (or install them yourself)" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The prometheus package would start a system-wide server via its postinst; tests start their
# own on a private port and storage, so keep the package's service from starting.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
fi
trap '[[ $created_policy == 1 ]] && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}"
