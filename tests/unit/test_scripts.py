"""Every Lua script follows the house conventions (checked statically)."""

from __future__ import annotations

import hashlib
import re

import pytest

from msfw_redis._store.scripts import load_scripts, lua_dir

SCRIPTS = load_scripts()


def test_scripts_are_found() -> None:
    """The script folder is found and holds the foundation script."""
    assert "clock_now" in SCRIPTS
    assert lua_dir().is_dir()


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_header_documents_keys_argv_reply(name: str) -> None:
    """Each script opens with a comment header giving KEYS, ARGV and Reply."""
    header = []
    for line in SCRIPTS[name].source.splitlines():
        if not line.startswith("--"):
            break
        header.append(line)
    text = "\n".join(header)
    assert text.startswith(f"-- {name}:"), "header must start with '-- <name>: <summary>'"
    for part in ("KEYS", "ARGV", "Reply"):
        assert re.search(rf"^-- {part}\b", text, re.M), f"{name} header lacks {part}"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_no_keyspace_scans_or_client_clocks(name: str) -> None:
    """No KEYS/SCAN inside scripts."""
    code = "\n".join(
        line for line in SCRIPTS[name].source.splitlines() if not line.lstrip().startswith("--")
    )
    assert not re.search(r"redis\.p?call\(\s*['\"](KEYS|SCAN)['\"]", code, re.I)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_write_sets_an_expiry(name: str) -> None:
    """A script that writes keys also sets expiries on them (PEXPIRE/EXPIRE/SET PX)."""
    code = SCRIPTS[name].source
    writes = re.findall(
        r"redis\.call\(\s*['\"](SET|HSET|HINCRBY|INCR|INCRBY|ZADD|SADD|RPUSH|LPUSH|HMSET)['\"]",
        code,
        re.I,
    )
    if writes:
        assert re.search(r"(PEXPIRE|EXPIRE|PEXPIREAT|'PX'|\"PX\")", code, re.I), name


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_sha_is_computed_locally(name: str) -> None:
    """The SHA1 we send with EVALSHA is the SHA1 of the assembled text, includes inlined."""
    script = SCRIPTS[name]
    assert "@include" not in script.source
    assert script.sha == hashlib.sha1(script.source.encode()).hexdigest()
