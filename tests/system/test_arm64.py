"""The .deb on arm64 (a Raspberry Pi's architecture), under emulation: qemu-user-static.

A Debian trixie arm64 rootfs from Debian's archive alone (mmdebstrap, cached as a tarball);
the package installed there by apt; then a synthetic camera's capture, the `motion`
processor, the broker and the alerts daemon, each an arm64 process in the chroot, against
the tests' Kafka-protocol broker on the host (a chroot shares the host's loopback). Every
frame of a short run must get its result, in capture order.

Emulation is ~15x slower than the host: one camera at a few frames per second, for seconds;
about 3 minutes here, and its rootfs 10 more (begun in the background by scripts/test.sh).
What it cannot show: a Pi's speed, its camera, its memory. Those are the benchmarks' and
the picamera2 stand-in's (tests/test_capture.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kafka import Record, create_topics, read_to_end, read_topic, unique_name
from tests.support.processes import DaemonProcess
from tests.support.tansu import TansuBroker, free_port
from tests.system.rootfs import chroot, enable_emulation, fresh_rootfs, mounted
from vspd import wire
from vspd.config.toml_writer import render_toml

# Its first use may wait for the rootfs, begun in the background by scripts/test.sh.
pytestmark = [pytest.mark.system, pytest.mark.emulated, pytest.mark.timeout(2400)]

CAMERAS = ("pi-door",)  # one: each emulated process takes about a minute to start
FRAMES_PER_CAMERA = 15
CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C.UTF-8",
    "HOME": "/root",
    "PYTHONUNBUFFERED": "1",
}


@pytest.fixture(scope="module")
def arm64_root(tmp_path_factory: pytest.TempPathFactory, deb_package: Path) -> Iterator[Path]:
    """A fresh arm64 trixie with the package installed by apt (its Depends from the archive)."""
    enable_emulation("arm64")
    root = fresh_rootfs(tmp_path_factory.mktemp("trixie-arm64") / "rootfs", arch="arm64")
    (root / "build").mkdir(exist_ok=True)
    shutil.copy2(deb_package, root / "build" / deb_package.name)
    with mounted(root):
        chroot(root, f"apt-get install -y -q --no-install-recommends /build/{deb_package.name}")
        yield root
    shutil.rmtree(root, ignore_errors=True)


def test_the_package_runs_on_arm64_and_every_frame_gets_its_result_in_order(
    arm64_root: Path, kafka_broker: TansuBroker
) -> None:
    root, bootstrap = arm64_root, kafka_broker.bootstrap
    assert chroot(root, "uname -m").strip() == "aarch64"  # the daemons below are arm64 code
    assert chroot(root, "dpkg --print-architecture").strip() == "arm64"
    topics = {
        "frames_topic": unique_name("arm64-frames"),
        "results_topic": unique_name("arm64-results"),
        "dead_letter_topic": unique_name("arm64-dead"),
    }
    create_topics(bootstrap, list(topics.values()), 2)
    processor_port = free_port()
    config = {
        "kafka": {"bootstrap_servers": bootstrap, "session_timeout_ms": 6000, **topics},
        "cameras": [
            {
                "id": camera,
                "source": f"synthetic:?objects=2&seed={number}",
                "fps": 3.0,
                "width": 320,
                "height": 240,
            }
            for number, camera in enumerate(CAMERAS, 1)
        ],
        "broker": {
            "processor_addresses": [f"127.0.0.1:{processor_port}"],
            "group_id": unique_name("arm64-broker"),
        },
        "processor": {"listen": f"127.0.0.1:{processor_port}", "builtin": "motion", "workers": 2},
        "alerts": {
            "group_id": unique_name("arm64-alerts"),
            "sinks": [{"type": "log", "name": "journal"}],
            "rules": [{"name": "motion", "labels": ["motion"], "min_frames": 2}],
        },
        "metrics": {"enabled": False},
    }
    (root / "etc/vspd/vspd.toml").write_text(render_toml(config))
    logs = root.parent

    def daemon(*args: str) -> DaemonProcess:
        name = "-".join(args)
        return DaemonProcess(
            ["--config", "/etc/vspd/vspd.toml", *args],
            logs / f"{name}.log",
            env=CHROOT_ENV,
            command=["chroot", str(root), "/usr/bin/vspd"],
        ).start()

    # All at once: under emulation each start-up (imports) takes about a minute.
    started = [daemon("processor"), daemon("broker"), daemon("alerts")]
    captures = [daemon("capture", "--camera", camera) for camera in CAMERAS]
    try:
        for process in [*started, *captures]:
            process.wait_for_log('"event": "serving"', timeout_s=600)
        read_topic(
            bootstrap,
            topics["frames_topic"],
            lambda records: len(records) >= FRAMES_PER_CAMERA * len(CAMERAS),
            600,
        )
        for capture in captures:
            assert capture.stop(timeout_s=120) == 0, capture.log()[-3000:]
        frames = read_to_end(bootstrap, topics["frames_topic"])
        expected = sorted(wire.frame_id(wire.decode_frame(r.value)) for r in frames)

        def all_results(records: list[Record]) -> bool:
            return len({wire.frame_id(wire.decode_result(r.value).frame) for r in records}) >= len(
                expected
            )

        results = read_topic(bootstrap, topics["results_topic"], all_results, 600)
        started[2].wait_for_log('"event": "alert"', timeout_s=300)
    finally:
        for process in [*captures, *reversed(started)]:
            process.stop(timeout_s=120)
    seen = [
        wire.decode_result(r.value).frame
        for r in sorted(results, key=lambda r: (r.partition, r.offset))
    ]
    assert sorted(wire.frame_id(frame) for frame in seen) == expected  # every frame, once
    for camera in CAMERAS:
        seqs = [frame.seq for frame in seen if frame.camera_id == camera]
        assert seqs == list(range(len(seqs))), (camera, seqs)  # capture order, none missing
        assert len(seqs) >= FRAMES_PER_CAMERA, (camera, seqs)
