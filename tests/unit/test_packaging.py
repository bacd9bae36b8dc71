"""The wheel ships every Lua script and every helper they include."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_contains_every_lua_script(tmp_path: Path) -> None:
    """The wheel holds msfw_redis/lua/*.lua, the helpers in msfw_redis/lua/lib/ and py.typed."""
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
    helpers = {f"msfw_redis/lua/lib/{p.name}" for p in (ROOT / "lua" / "lib").glob("*.lua")}
    assert expected, "no scripts in lua/"
    assert helpers, "no helpers in lua/lib/"
    assert expected <= names
    # Scripts are assembled from lib/ at load time: without it an installed package breaks.
    assert helpers <= names
    assert "msfw_redis/py.typed" in names
