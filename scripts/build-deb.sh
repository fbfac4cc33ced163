#!/usr/bin/env bash
# Build vspd_<version>_all.deb from this clone, on any Debian or Ubuntu machine (as root):
# inside a Debian trixie rootfs (debootstrap + chroot, with trixie's own debhelper and
# protoc), exactly as the system tests build it. The rootfs is cached in .cache/system.
#   scripts/build-deb.sh [OUT_DIR]     (default: dist/); prints the .deb's path
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-env.sh
apt_install debootstrap ca-certificates git python3 tar
exec python3 -m tests.system.rootfs build-deb "${1:-dist}"
