"""Generate the admin API's Python code from ``proto/`` with grpcio-tools.

``python -m switchyard.proxy.admin.protogen`` rewrites ``proxy/_gen/``; the test suite regenerates into a
temporary directory and fails when the committed code differs. The proto root is mapped to the
virtual path ``switchyard/proxy/_gen`` so generated imports are absolute within the installed
package (the ``proxy`` folder installs as ``switchyard.proxy``); the output is then moved to
``proxy/_gen`` under ``out_dir``, where the folder lives.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ("switchyard/v1/admin.proto",)
PACKAGES = ("proxy/_gen", "proxy/_gen/switchyard", "proxy/_gen/switchyard/v1")


def generate(out_dir: Path) -> list[Path]:
    """Write the generated modules (and package ``__init__`` files) under ``out_dir``."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-Iswitchyard/proxy/_gen={ROOT / 'proto'}", f"-I{include}",
                f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}",
                *(f"switchyard/proxy/_gen/{p}" for p in PROTOS)]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        shutil.copytree(Path(tmp) / "switchyard/proxy/_gen", out_dir / "proxy/_gen", dirs_exist_ok=True)
    for pkg in PACKAGES:
        init = out_dir / pkg / "__init__.py"
        init.parent.mkdir(parents=True, exist_ok=True)
        init.write_text('"""Generated from proto/ by switchyard.proxy.admin.protogen; do not edit."""\n')
    return sorted(p for p in (out_dir / "proxy/_gen").rglob("*") if p.is_file())


if __name__ == "__main__":
    for path in generate(ROOT):
        print(path.relative_to(ROOT))
    sys.exit(0)
