"""Store URLs as text: which schemes are valid, the parts of a Cluster or Sentinel URL,
and redaction of the password in any URL or message.

Pure functions with no Redis client behind them, so the settings layer can validate a
``redis_url`` at construction and every layer can redact what it logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from msfw_redis._exceptions import ConfigurationError

__all__ = ["SCHEMES", "StoreURL", "check_url", "parse_url", "redact", "redact_url"]

SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "memory://",
    "redis+cluster://",
    "rediss+cluster://",
    "redis+sentinel://",
    "rediss+sentinel://",
)

# ``scheme://[user]:password@`` inside any text: the password part is masked.
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@", re.I)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to log, print or repr)."""
    return redact(url)


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it masked."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def _bad_url(url: object, why: str) -> ConfigurationError:
    shown = repr(redact_url(url)) if isinstance(url, str) else repr(url)
    return ConfigurationError(f"invalid redis_url {shown}: {why}", field="redis_url")


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed ``redis+cluster://`` or ``redis+sentinel://`` URL."""

    kind: str
    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    master_name: str | None = None
    db: int = 0
    options: tuple[tuple[str, str], ...] = ()


_OPTIONS = {
    "cluster": frozenset(),
    "sentinel": frozenset({"sentinel_username", "sentinel_password"}),
}


def parse_url(url: str) -> StoreURL | None:
    """The parts of a Cluster or Sentinel URL (None for the other schemes).

    Raises :class:`ConfigurationError` naming ``redis_url`` when the URL is malformed.
    """
    scheme, sep, _ = url.partition("://")
    if not sep or "+" not in scheme:
        return None
    base, _, kind = scheme.partition("+")
    parts = urlsplit(url)
    netloc = parts.netloc
    creds, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = creds.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _bad_url(url, f"expected host:port[,host:port...], got {item.strip()!r}")
        nodes.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    master_name = None
    db = 0
    if kind == "sentinel":
        if not path:
            raise _bad_url(url, "a Sentinel URL needs the master name: .../<master_name>[/db]")
        master_name = unquote(path[0])
        rest = path[1:]
        if len(rest) > 1 or (rest and not rest[0].isdigit()):
            raise _bad_url(url, "after the master name only a database number may follow")
        db = int(rest[0]) if rest else 0
    elif path not in ([], ["0"]):
        raise _bad_url(url, "a Cluster URL has no database (Cluster only has db 0)")
    options = tuple(parse_qsl(parts.query, keep_blank_values=True))
    for name, _value in options:
        if name not in _OPTIONS[kind]:
            allowed = ", ".join(sorted(_OPTIONS[kind])) or "none"
            raise _bad_url(url, f"unknown option {name!r} (allowed: {allowed})")
    return StoreURL(
        kind=kind,
        nodes=tuple(nodes),
        tls=base == "rediss",
        username=username,
        password=password,
        master_name=master_name,
        db=db,
        options=options,
    )


def check_url(url: object) -> str:
    """``url`` if it is a valid store URL, else :class:`ConfigurationError` naming it."""
    if not isinstance(url, str) or not url.startswith(SCHEMES):
        raise _bad_url(url, f"expected one of {', '.join(SCHEMES)}")
    parse_url(url)
    return url
