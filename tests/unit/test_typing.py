"""Type checkers see through the decorators (mypy --strict on a sample file)."""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_decorated_methods_keep_their_types(tmp_path: Path) -> None:
    """mypy --strict accepts the typed sample and infers `get_user(123)` as User."""
    sample = ROOT / "tests" / "typing" / "interfaces_typed.py"
    out, err, status = mypy_api.run(
        ["--strict", "--no-incremental", "--show-error-codes", str(sample)]
    )
    assert status == 0, out + err
    reveal = (
        sample.read_text()
        + "\n\nasync def _r(s: UserService) -> None:\n    reveal_type(await s.get_user(1))\n"
    )
    # A private copy: concurrent runs of the suite must not share one scratch file.
    tmp = tmp_path / "reveal_sample.py"
    tmp.write_text(reveal)
    out, err, _ = mypy_api.run(["--strict", "--no-incremental", str(tmp)])
    assert 'Revealed type is "reveal_sample.User"' in out, out + err
