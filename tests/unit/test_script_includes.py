"""The ``-- @include`` resolver: nesting, de-duplication, cycles, missing files, the SHA."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

import pytest

from msfw_redis._store.scripts import IncludeError, assemble, lua_dir, scripts_in

if TYPE_CHECKING:
    from pathlib import Path


def write(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return root


def test_nested_includes_come_before_their_users(tmp_path: Path) -> None:
    """A helper's own include is inlined first, then the helper, then the script's code."""
    root = write(
        tmp_path,
        {
            "top.lua": '-- top: x\n-- @include "lib/outer.lua"\nreturn outer()\n',
            "lib/outer.lua": '-- @include "lib/inner.lua"\nlocal function outer() return inner() end\n',
            "lib/inner.lua": "local function inner() return 1 end\n",
        },
    )
    text, includes = assemble(root, "top.lua")
    assert text == (
        "-- top: x\n"
        "local function inner() return 1 end\n"
        "local function outer() return inner() end\n"
        "return outer()\n"
    )
    assert includes == ("lib/outer.lua", "lib/inner.lua")


def test_each_file_is_included_once(tmp_path: Path) -> None:
    """A helper included by two helpers and again by the script appears once, at its first use."""
    root = write(
        tmp_path,
        {
            "top.lua": (
                '-- @include "lib/a.lua"\n-- @include "lib/b.lua"\n'
                '-- @include "lib/shared.lua"\nreturn a() + b()\n'
            ),
            "lib/a.lua": '-- @include "lib/shared.lua"\nlocal function a() return shared() end\n',
            "lib/b.lua": '-- @include "lib/shared.lua"\nlocal function b() return shared() end\n',
            "lib/shared.lua": "local function shared() return 1 end",
        },
    )
    text, includes = assemble(root, "top.lua")
    assert text.count("local function shared()") == 1
    assert text.index("function shared") < text.index("function a") < text.index("function b")
    assert includes == ("lib/a.lua", "lib/shared.lua", "lib/b.lua")
    # A helper without a trailing newline does not run into the next line.
    assert "return 1 end\nlocal function a()" in text


def test_a_cycle_is_an_error_naming_the_chain(tmp_path: Path) -> None:
    """x includes y includes x: the error shows the whole chain from the script."""
    root = write(
        tmp_path,
        {
            "top.lua": '-- @include "lib/x.lua"\n',
            "lib/x.lua": '-- @include "lib/y.lua"\n',
            "lib/y.lua": '-- @include "lib/x.lua"\n',
        },
    )
    with pytest.raises(
        IncludeError, match=re.escape("top.lua -> lib/x.lua -> lib/y.lua -> lib/x.lua")
    ):
        assemble(root, "top.lua")


def test_a_file_including_itself_is_a_cycle(tmp_path: Path) -> None:
    """The shortest cycle is caught too, not recursed into until the stack runs out."""
    root = write(
        tmp_path,
        {"top.lua": '-- @include "lib/me.lua"\n', "lib/me.lua": '-- @include "lib/me.lua"\n'},
    )
    with pytest.raises(
        IncludeError, match=re.escape("include cycle: top.lua -> lib/me.lua -> lib/me.lua")
    ):
        assemble(root, "top.lua")


def test_a_missing_include_names_the_file_and_the_includer(tmp_path: Path) -> None:
    """The error says which file is missing and which line asked for it."""
    root = write(
        tmp_path,
        {"top.lua": '-- @include "lib/a.lua"\n', "lib/a.lua": '\n-- @include "lib/gone.lua"\n'},
    )
    with pytest.raises(
        IncludeError,
        match=re.escape("include not found: lib/gone.lua (included from lib/a.lua line 2)"),
    ):
        assemble(root, "top.lua")


@pytest.mark.parametrize(
    "line",
    [
        "-- @include lib/a.lua",
        "-- @include 'lib/a.lua'",
        '-- @include "lib/a.lua" trailing words',
    ],
)
def test_a_malformed_include_line_is_an_error(tmp_path: Path, line: str) -> None:
    """An include line that is not exactly `-- @include "path"` is refused, not ignored."""
    root = write(tmp_path, {"top.lua": line + "\n", "lib/a.lua": "local a = 1\n"})
    with pytest.raises(IncludeError, match=re.escape("malformed include at top.lua line 1")):
        assemble(root, "top.lua")


@pytest.mark.parametrize(
    "path", ["../outside.lua", "/etc/x.lua", "lib/../lib/a.lua", "lib/a", "lib//a.lua"]
)
def test_an_include_outside_the_script_folder_is_refused(tmp_path: Path, path: str) -> None:
    """Include paths are plain relative paths inside lua/, ending in .lua."""
    root = write(tmp_path, {"top.lua": f'-- @include "{path}"\n', "lib/a.lua": "local a = 1\n"})
    with pytest.raises(IncludeError, match="bad include path"):
        assemble(root, "top.lua")


def test_sha_is_over_the_assembled_text(tmp_path: Path) -> None:
    """The SHA1 is that of the text with includes inlined, which is what Redis runs."""
    raw = '-- top: x\n-- @include "lib/one.lua"\nreturn one()\n'
    root = write(tmp_path, {"top.lua": raw, "lib/one.lua": "local function one() return 1 end\n"})
    (script,) = scripts_in(root).values()
    assert script.name == "top"
    assert "@include" not in script.source
    assert script.sha == hashlib.sha1(script.source.encode()).hexdigest()
    assert script.sha != hashlib.sha1(raw.encode()).hexdigest()


def test_helpers_in_subfolders_are_not_scripts(tmp_path: Path) -> None:
    """Only top-level files become scripts; lib/ files are reached through includes."""
    root = write(tmp_path, {"top.lua": "return 1\n", "lib/one.lua": "local one = 1\n"})
    assert list(scripts_in(root)) == ["top"]


# -- the package's own scripts -----------------------------------------------------------

LUA = lua_dir()
TOP_LEVEL = sorted(e.name for e in LUA.iterdir() if e.is_file() and e.name.endswith(".lua"))
HELPERS = sorted(f"lib/{e.name}" for e in LUA.joinpath("lib").iterdir() if e.name.endswith(".lua"))
INCLUDE_LINE = re.compile(r"^---?[ \t]*@include\b")


@pytest.mark.parametrize("path", TOP_LEVEL + HELPERS)
def test_every_include_in_lua_resolves_without_cycles(path: str) -> None:
    """Every script and every helper assembles: each include exists and none loops."""
    text, includes = assemble(LUA, path)
    assert not any(INCLUDE_LINE.match(line) for line in text.splitlines())
    assert len(set(includes)) == len(includes)


def test_every_helper_is_used() -> None:
    """No helper in lua/lib is dead: some script includes each one."""
    used = {inc for path in TOP_LEVEL for inc in assemble(LUA, path)[1]}
    assert set(HELPERS) - used == set()


@pytest.mark.parametrize("path", HELPERS)
def test_one_helper_one_file(path: str) -> None:
    """lib/<name>.lua opens with a comment and defines the local called <name>.

    Companions it needs are named ``<name>_*`` (publish.lua's publish_argc), so an
    including script can never collide with a helper's locals by accident.
    """
    text = LUA.joinpath(*path.split("/")).read_text(encoding="utf-8")
    name = path.removeprefix("lib/").removesuffix(".lua")
    assert text.startswith(f"-- {name}"), f"{path} must open with '-- {name}...'"
    defined = re.findall(r"^local (?:function )?([A-Za-z_]\w*)", text, re.M)
    assert name in defined
    assert [d for d in defined if d != name and not d.startswith(f"{name}_")] == []


@pytest.mark.parametrize("path", TOP_LEVEL)
def test_header_stays_at_the_top_of_the_file(path: str) -> None:
    """The script file itself opens with its header, KEYS within 15 lines, includes after it."""
    lines = LUA.joinpath(path).read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith(f"-- {path.removesuffix('.lua')}:")
    assert any(re.match(r"^-- KEYS\b", line) for line in lines[:15]), (
        f"{path}: KEYS not in the first 15 lines"
    )
    header_end = next(
        i for i, line in enumerate(lines) if not line.startswith("--") or INCLUDE_LINE.match(line)
    )
    header = "\n".join(lines[:header_end])
    for part in ("KEYS", "ARGV", "Reply"):
        assert re.search(rf"^-- {part}\b", header, re.M), f"{path}: {part} must be in the header"
