"""Fixtures of the system tests: vspd's .deb built inside Debian trixie, and booted trixie systems."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.rootfs import REPO, BootedSystem, chroot, fresh_rootfs, mounted


@pytest.fixture(scope="session")
def deb_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package, built once per session by the README's command, scripts/build-deb.sh."""
    out = tmp_path_factory.mktemp("deb-build")
    build = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-deb.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    deb = Path(build.stdout.strip().splitlines()[-1])
    assert deb.parent == out.resolve()
    assert deb.name.startswith("vspd_")
    assert deb.name.endswith("_all.deb")
    return deb


@pytest.fixture(scope="module")
def built_system(
    tmp_path_factory: pytest.TempPathFactory, deb_package: Path
) -> Iterator[tuple[Path, Path]]:
    """(rootfs, .deb): a fresh trixie with the package installed by apt, resolving its Depends."""
    root = fresh_rootfs(tmp_path_factory.mktemp("trixie") / "rootfs")
    (root / "build").mkdir(exist_ok=True)
    shutil.copy2(deb_package, root / "build" / deb_package.name)
    with mounted(root):
        chroot(root, f"apt-get install -y -q --no-install-recommends /build/{deb_package.name}")
    yield root, deb_package
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def booted(built_system: tuple[Path, Path]) -> Iterator[BootedSystem]:
    root, _deb = built_system
    system = BootedSystem(root, "vspd-system-test").boot()
    yield system
    system.shutdown()
