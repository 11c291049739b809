"""The layers: `upload_service.core` and the workers run without the HTTP service or
the fast path (UPLOAD_FAST_PATH=off must not need them, and workers never do)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def modules_of(package: str) -> list[str]:
    files = ROOT.joinpath(*package.split(".")).rglob("*.py")
    names = (".".join(f.relative_to(ROOT).with_suffix("").parts) for f in files)
    return sorted(name.removesuffix(".__init__") for name in names)


# processors.actors builds the store and sweeps work dirs at import: left out.
@pytest.mark.parametrize("package", ["upload_service.core", "processors"])
def test_a_layer_loads_nothing_of_the_http_service_or_the_fast_path(package: str) -> None:
    wanted = [m for m in modules_of(package) if m != "processors.actors"]
    code = (
        "import importlib, sys\n"
        f"for name in {wanted!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith("
        "('upload_service.http', 'upload_service.fastpath'))))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"
