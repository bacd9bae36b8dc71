"""The wheel ships every Lua script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_contains_every_lua_script(tmp_path: Path) -> None:
    """`python -m build --wheel` produces a wheel holding msfw_redis/lua/*.lua and py.typed."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("msfw_redis-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"msfw_redis/lua/{p.name}" for p in (ROOT / "lua").glob("*.lua")}
    assert expected, "no scripts in lua/"
    assert expected <= names
    assert "msfw_redis/py.typed" in names
