"""Type checkers see through the decorators (mypy --strict on a sample file)."""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_decorated_methods_keep_their_types() -> None:
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
    tmp = ROOT / "tests" / "typing" / "_reveal_tmp.py"
    tmp.write_text(reveal)
    try:
        out, err, _ = mypy_api.run(["--strict", "--no-incremental", str(tmp)])
    finally:
        tmp.unlink()
    assert (
        'Revealed type is "tests.typing._reveal_tmp.User"' in out or '"_reveal_tmp.User"' in out
    ), out
