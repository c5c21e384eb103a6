"""Generate the admin API's Python code from ``proto/`` with grpcio-tools.

``python -m proxy.admin.protogen`` rewrites ``proxy/_gen/``; the test suite regenerates into a
temporary directory and fails when the committed code differs. The proto root is mapped to the
virtual path ``proxy/_gen`` so generated imports are absolute within this package.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ("switchyard/v1/admin.proto",)
PACKAGES = ("proxy/_gen", "proxy/_gen/switchyard", "proxy/_gen/switchyard/v1")


def generate(out_dir: Path) -> list[Path]:
    """Write the generated modules (and package ``__init__`` files) under ``out_dir``."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-Iproxy/_gen={ROOT / 'proto'}", f"-I{include}",
            f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
            *(f"proxy/_gen/{p}" for p in PROTOS)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    for pkg in PACKAGES:
        init = out_dir / pkg / "__init__.py"
        init.parent.mkdir(parents=True, exist_ok=True)
        init.write_text('"""Generated from proto/ by proxy.admin.protogen; do not edit."""\n')
    return sorted(p for p in (out_dir / "proxy/_gen").rglob("*") if p.is_file())


if __name__ == "__main__":
    for path in generate(ROOT):
        print(path.relative_to(ROOT))
    sys.exit(0)
