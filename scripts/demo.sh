#!/usr/bin/env bash
# The whole vspd pipeline on this machine for about a minute, with an embedded
# Kafka-protocol broker: from a fresh clone on a fresh Debian machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-env.sh
apt_install ca-certificates
make_venv demo
exec "$VENV/bin/vspd" demo --duration "${VSPD_DEMO_DURATION:-60}" "$@"
