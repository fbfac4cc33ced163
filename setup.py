"""Build hook: generates the Python modules of the wire contract from protos/.

Nothing generated is committed. Both install paths run this:
- pip (any PEP 517 front end): grpcio-tools from the build requirements;
- the Debian build (``VSPD_PROTOC=system``): Debian's own ``protoc`` and
  ``grpc_python_plugin``, so the code matches Debian's python3-protobuf.
All metadata lives in pyproject.toml.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTOS = ROOT / "protos"


def _protoc_command() -> list[str]:
    if os.environ.get("VSPD_PROTOC") != "system":
        try:
            import grpc_tools
        except ImportError:
            pass
        else:
            well_known = Path(grpc_tools.__file__).parent / "_proto"
            return [sys.executable, "-m", "grpc_tools.protoc", f"-I{well_known}"]
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if protoc is None or plugin is None:
        raise SystemExit(
            "vspd build: no protobuf compiler. Install grpcio-tools (pip) or "
            "protobuf-compiler and protobuf-compiler-grpc (Debian)."
        )
    return [protoc, f"--plugin=protoc-gen-grpc_python={plugin}"]


def generate_protos() -> None:
    sources = sorted(str(path) for path in PROTOS.rglob("*.proto"))
    out = str(ROOT)
    command = [
        *_protoc_command(),
        f"-I{PROTOS}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *sources,
    ]
    subprocess.run(command, check=True)


class BuildPyWithProtos(build_py):
    """Generate into the source tree first, so that editable installs see it too."""

    def run(self) -> None:
        generate_protos()
        super().run()


if __name__ == "__main__":
    if sys.argv[1:] == ["generate_protos"]:
        generate_protos()
    else:
        setup(cmdclass={"build_py": BuildPyWithProtos})
