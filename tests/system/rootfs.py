"""A real Debian trixie system for the system tests: debootstrap, chroot, systemd-nspawn.

The base rootfs is built once and kept as a tarball under .cache/system (its
name carries a hash of what it contains); each test unpacks a fresh copy.
A foreign architecture (arm64, a Raspberry Pi's) runs under qemu-user-static through
binfmt_misc, made by mmdebstrap (the host's apt; dpkg and maintainer scripts emulated).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "system"
SUITE = "trixie"
# The package's Depends on Python libraries (debian/control; the system test checks them).
DEPENDS = [
    "python3-confluent-kafka",
    "python3-grpcio",
    "python3-protobuf",
    "python3-numpy",
    "python3-opencv",
    "python3-pydantic",
    "python3-structlog",
    "python3-prometheus-client",
    "python3-jinja2",
    "python3-paho-mqtt",
    "python3-sdnotify",
]
# Booting, building the package and its smoke test, and what its Depends pull in
# (installed ahead so that each test's `apt-get install ./vspd.deb` is quick).
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "ca-certificates",
    "python3",
    "procps",
    "debhelper",
    "dh-python",
    "pybuild-plugin-pyproject",
    "python3-all",
    "python3-setuptools",
    "build-essential",
    "protobuf-compiler",
    "protobuf-compiler-grpc",
    "dpkg-dev",
    "fakeroot",
    *DEPENDS,
    "opencv-data",
]
# A foreign rootfs only runs the package (it is arch:all, built once on the host's
# architecture): its Depends, installed ahead so the test's own install is quick.
RUNTIME_PACKAGES = [
    "ca-certificates",
    "procps",
    "systemd",
    *DEPENDS,
]
QEMU_NAMES = {"arm64": "aarch64"}


def debian_mirror() -> str:
    """The Debian archive this machine's apt already uses, else deb.debian.org."""
    sources = [
        Path("/etc/apt/sources.list"),
        *sorted(Path("/etc/apt/sources.list.d").glob("*.sources")),
        *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
    ]
    for path in sources:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.lstrip().startswith("#"):
                continue
            for match in re.finditer(r"(https?://\S+?/debian)/?(?:\s|$)", line):
                return match.group(1)
    return "http://deb.debian.org/debian"  # an Ubuntu machine: Debian's own redirector


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


# The devices a chroot needs, made in a tmpfs of its own (major, minor): never a bind
# of the host's /dev, which a killed test would leave mounted, and which an
# `rm -rf` of the checkout would then walk into and empty.
_DEVICES = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}
_DEVICE_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
}


@contextlib.contextmanager
def mounted(root: Path) -> Iterator[None]:
    """/proc, /sys and a /dev of its own in the rootfs while we chroot into it."""
    dev = root / "dev"
    mounts = [
        (root / "proc", ["-t", "proc", "proc"]),
        (root / "sys", ["-t", "sysfs", "sysfs"]),
        (dev, ["-t", "tmpfs", "-o", "mode=755,size=16m", "tmpfs"]),
        (dev / "pts", ["-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620", "devpts"]),
    ]
    done = []
    try:
        for target, args in mounts:
            target.mkdir(parents=True, exist_ok=True)
            run(["mount", *args, str(target)])
            done.append(target)
            if target == dev:
                _make_devices(dev)
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-l", str(target)], check=False)


def _make_devices(dev: Path) -> None:
    for name, (major, minor) in _DEVICES.items():
        os.mknod(dev / name, stat.S_IFCHR, os.makedev(major, minor))
        # Not the umask's: apt's sandbox user writes to null, as on any system.
        os.chmod(dev / name, 0o666)  # noqa: S103
    for name, target in _DEVICE_LINKS.items():
        (dev / name).symlink_to(target)
    (dev / "pts").mkdir()
    (dev / "shm").mkdir()
    os.chmod(dev / "shm", 0o1777)  # noqa: S103 - sticky and shared, as /dev/shm is


def chroot(root: Path, command: str, timeout: float = 1800) -> str:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C.UTF-8",
        "HOME": "/root",
    }
    result = subprocess.run(
        ["chroot", str(root), "sh", "-c", command],
        text=True,
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"in {root}: {command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def host_arch() -> str:
    return run(["dpkg", "--print-architecture"]).stdout.strip()


def enable_emulation(arch: str) -> None:
    """Let this machine run `arch` binaries (qemu-user-static, registered in binfmt_misc).

    The F flag ("fix binary") opens the interpreter once, at registration, so that it
    works inside a chroot that has no qemu of its own.
    """
    name = QEMU_NAMES[arch]
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)])
    if not (binfmt / f"qemu-{name}").exists():
        run(["update-binfmts", "--enable", f"qemu-{name}"])
    if (binfmt / f"qemu-{name}").read_text().splitlines()[0] != "enabled":
        raise RuntimeError(f"binfmt_misc has qemu-{name} but it is disabled")


def emulated_shortcuts() -> list[str]:
    """mmdebstrap options that skip what costs minutes under qemu and is not tested:
    py3compile/py3clean (diverted to true), fsync, documentation and translations."""
    hooks = []
    for tool in ("py3compile", "py3clean"):
        hooks += [
            f'--essential-hook=chroot "$1" dpkg-divert --quiet --local --rename --add /usr/bin/{tool}',
            f'--essential-hook=ln -s /bin/true "$1/usr/bin/{tool}"',
        ]
    # What the daemons import, compiled once here (in the cached tarball), so that
    # five daemons starting at once do not each compile it again under emulation.
    imports = (
        "numpy, cv2, grpc, confluent_kafka, google.protobuf, pydantic, structlog, "
        "prometheus_client, jinja2, paho.mqtt.client, sdnotify"
    )
    return [
        *hooks,
        f'--customize-hook=chroot "$1" python3 -c "import {imports}"',
        "--dpkgopt=force-unsafe-io",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
    ]


def base_tarball(arch: str | None = None) -> Path:
    """The cached rootfs tarball for `arch`, built first if need be.

    One builder at a time per tarball (a lock file): scripts/test.sh begins the slow
    arm64 one in the background, and a test that needs it meanwhile waits for it.
    """
    arch = arch or host_arch()
    foreign = arch != host_arch()
    packages = RUNTIME_PACKAGES if foreign else PACKAGES
    made_with = [SUITE, *packages, *(emulated_shortcuts() if foreign else [])]
    key = hashlib.sha256(" ".join(made_with).encode()).hexdigest()[:12]
    tarball = CACHE / (f"{SUITE}-{arch}-{key}.tar" if foreign else f"{SUITE}-{key}.tar")
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    with tarball.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tarball.exists():  # built by whoever held the lock
            _build_tarball(tarball, arch, foreign, packages)
    return tarball


def _build_tarball(tarball: Path, arch: str, foreign: bool, packages: list[str]) -> None:
    work = CACHE / f"build-{arch}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    mirror = debian_mirror()
    if foreign:
        # mmdebstrap resolves and downloads with the host's apt, in one transaction;
        # only dpkg and the maintainer scripts run emulated (debootstrap's second stage
        # runs its perl and shell machinery under qemu too: many times slower).
        enable_emulation(arch)
        run(
            [
                "mmdebstrap",
                "--mode=root",
                f"--arch={arch}",
                "--variant=apt",
                "--skip=cleanup/apt/lists",  # the test's apt-get install may still resolve
                # Emulated, each byte-compilation of every Python module installed is most
                # of the time: skip it (Python compiles what it imports, when it does).
                *emulated_shortcuts(),
                f"--include={','.join(packages)}",
                SUITE,
                str(work),
                mirror,
            ],
            timeout=3600,
        )
    else:
        run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=systemd,systemd-sysv,dbus,ca-certificates",
                SUITE,
                str(work),
                mirror,
            ],
            timeout=1800,
        )
        (work / "etc/apt/sources.list").write_text(f"deb {mirror} {SUITE} main\n")
        with mounted(work):
            chroot(
                work,
                "apt-get update -q && apt-get install -y -q --no-install-recommends "
                + " ".join(packages),
            )
            chroot(work, "apt-get clean")
    (work / "etc/hostname").write_text("vspd-test\n")
    # nspawn needs an empty machine-id to boot a fresh system; no TTY login prompts.
    (work / "etc/machine-id").write_text("")
    for getty in (work / "etc/systemd/system/getty.target.wants").glob("*"):
        getty.unlink()
    partial = tarball.with_suffix(".partial")
    run(["tar", "-C", str(work), "-cf", str(partial), "."], timeout=600)
    partial.replace(tarball)
    shutil.rmtree(work, ignore_errors=True)


def fresh_rootfs(destination: Path, arch: str | None = None) -> Path:
    destination.mkdir(parents=True)
    run(["tar", "-C", str(destination), "-xf", str(base_tarball(arch))], timeout=600)
    return destination


def build_deb(root: Path) -> Path:
    """Build the package inside the trixie rootfs from this checkout's tracked files."""
    source = root / "build" / "vspd"
    source.mkdir(parents=True)
    files = run(["git", "ls-files", "-z"], cwd=REPO).stdout.split("\0")
    for name in filter(None, files):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    with mounted(root):
        chroot(
            root,
            "cd /build/vspd && dpkg-buildpackage -us -uc -b > /build/build.log 2>&1 || (tail -60 /build/build.log; exit 1)",
        )
    (deb,) = (root / "build").glob("vspd_*_all.deb")
    return deb


class BootedSystem:
    """The rootfs booted with systemd as PID 1 in a container (host network shared)."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.log = root.parent / f"{name}-console.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def boot(self, timeout_s: float = 120) -> BootedSystem:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    "systemd-nspawn",
                    "-D",
                    str(self.root),
                    "--register=no",
                    "--keep-unit",
                    "--boot",
                    "--console=pipe",
                    f"--machine={self.name}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            self._wait_until_up(time.monotonic() + timeout_s)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_until_up(self, deadline: float) -> None:
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"container exited:\n{self.log.read_text()[-3000:]}")
            self.leader = container_init(self.process.pid)
            if self.leader:
                state = self.sh("systemctl is-system-running || true").strip()
                if state in ("running", "degraded"):
                    return
            else:
                state = "no init process yet"
            if time.monotonic() > deadline:
                raise RuntimeError(f"container not up ({state}):\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def sh(self, command: str, check: bool = False, timeout: float = 300) -> str:
        result = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "/bin/sh", "-c", command],
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
            env={
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "LC_ALL": "C.UTF-8",
                "SYSTEMD_PAGER": "",
                "TERM": "dumb",
            },
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{command}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout + result.stderr

    def shutdown(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.sh("systemctl poweroff --no-block")
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None


def container_init(nspawn_pid: int) -> int:
    """The container's PID 1 among nspawn's descendants, or 0 while there is none yet.

    nspawn forks an intermediate child that forks the container's init and exits, so its
    first child is not necessarily init: init is the process that is PID 1 in a namespace
    of its own (the last NSpid field is 1).
    """
    pending = [nspawn_pid]
    while pending:
        pid = pending.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        nspids = next(
            (line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), []
        )
        if len(nspids) > 1 and nspids[-1] == "1":
            return pid
        pending.extend(int(child) for child in children)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`scripts/build-deb.sh [OUT_DIR]`: the .deb, built in a fresh trixie rootfs."""
    parser = argparse.ArgumentParser(
        prog="scripts/build-deb.sh",
        description="Build vspd's .deb inside a Debian trixie rootfs (debootstrap, chroot).",
    )
    parser.add_argument("command", choices=["build-deb", "prepare"])
    parser.add_argument(
        "out", nargs="?", default="dist", help="where the .deb goes; prepare: the architecture"
    )
    args = parser.parse_args(argv)
    if args.command == "prepare":  # scripts/test.sh: the cached rootfs, ahead of the tests
        print(base_tarball(args.out if args.out != "dist" else None))
        return 0
    args.out = Path(args.out)
    if os.geteuid() != 0:
        print("scripts/build-deb.sh: needs root (debootstrap, chroot, mount)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="vspd-deb-"))
    try:
        print(f"==> trixie rootfs (cached in {CACHE})", flush=True)
        root = fresh_rootfs(work / "rootfs")
        print("==> dpkg-buildpackage inside it", flush=True)
        built = build_deb(root)
        args.out.mkdir(parents=True, exist_ok=True)
        target = (args.out / built.name).resolve()
        shutil.copy2(built, target)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        print(f"scripts/build-deb.sh: the build failed:\n{str(detail)[-3000:]}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
