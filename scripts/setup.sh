#!/usr/bin/env bash
# Installs what weft needs to build and test on Debian 12 (bookworm).
# Idempotent: prints nothing and changes nothing when everything is present.
# Installing needs root; without it, lists what is missing and fails.
set -euo pipefail

packages=(g++ meson ninja-build pkg-config libboost-context-dev libboost-dev
          libspdlog-dev googletest libgtest-dev)

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: missing packages: ${missing[*]}" >&2
    echo "setup.sh: run as root to install them: sudo $0" >&2
    echo "setup.sh: (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "setup.sh: installing ${missing[*]}"
# A fresh image has no package lists: update first only then, and once more
# if the install fails because the lists are stale.
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    apt-get update -qq
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

still_missing=()
for p in "${missing[@]}"; do
    installed "$p" || still_missing+=("$p")
done
if [ ${#still_missing[@]} -ne 0 ]; then
    echo "setup.sh: could not install: ${still_missing[*]}" >&2
    exit 1
fi
echo "setup.sh: done"
