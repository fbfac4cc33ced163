#!/usr/bin/env bash
# Every vspd test, from a fresh clone on a fresh Debian machine (as root):
# system packages, a virtual environment, then ruff, mypy (strict) and pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k processor).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-env.sh

# opencv-data: the Haar cascades of the `faces` built-in (Debian's OpenCV uses them too);
# mosquitto: a real MQTT broker; chromium: renders the HTML reports; openssl: test certificates;
# debootstrap, systemd-container, lintian: the .deb in a booted Debian trixie (tests/system);
# qemu-user-static, binfmt-support, mmdebstrap, arch-test: the .deb on arm64 under emulation;
# GStreamer's RTSP server (under Debian's python3, with x264): a real RTSP camera.
apt_install ca-certificates opencv-data mosquitto chromium openssl \
    debootstrap systemd-container lintian dpkg-dev \
    qemu-user-static binfmt-support mmdebstrap arch-test \
    python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \
    gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly

# The arm64 rootfs of tests/system/test_arm64.py (run last) takes minutes under emulation:
# when the whole suite runs, it is made in the background while the rest is tested, at the
# lowest CPU and I/O priority so that it takes only what the tests leave idle.
if [ $# -eq 0 ]; then
    mkdir -p .cache/system
    setsid nice -n 19 ionice -c 3 python3 -m tests.system.rootfs prepare arm64 \
        >.cache/system/prepare-arm64.log 2>&1 &
    prepare_pid=$!
    trap 'kill -- "-$prepare_pid" 2>/dev/null || true' EXIT
fi
make_venv test

# The `faces` built-in needs CascadeClassifier, which OpenCV 5's main wheel dropped;
# the contrib wheel of the same release is a superset. Test with that.
if "$VENV/bin/python" -m pip show -q opencv-python-headless 2>/dev/null; then
    echo "==> switching to opencv-contrib-python-headless"
    "$VENV/bin/python" -m pip uninstall -q -y opencv-python-headless opencv-contrib-python-headless
    "$VENV/bin/python" -m pip install -q opencv-contrib-python-headless
fi

export PATH="$VENV/bin:$PATH"
echo "==> ruff"
ruff check vspd tests bench setup.py
ruff format --check vspd tests bench setup.py
echo "==> mypy (strict)"
mypy
echo "==> pytest"
pytest "$@"
