"""Cache keys for the shared response cache: pure functions, no I/O.

A :class:`CacheKey` names one cache entry. Its ``digest`` is a SHA-256 over a canonical
JSON document of everything a response depends on::

    ["msfw-cache-key/1", service, METHOD, path, params, vary, credential]

* ``path`` is the route *template* (``/users/{user_id}``) for typed calls, or the
  concrete path for plain requests; either way the values live in ``params``.
* ``params`` are the call's arguments or the query string, sorted by name. Repeated
  query names keep their order (``?a=2&a=1`` may mean something else than ``?a=1&a=2``).
* ``vary`` holds extra values the response depends on (``vary_on`` arguments, tenant,
  selected request headers), also sorted by name.
* ``credential`` is an HMAC-SHA256 fingerprint, under a configured secret, of the
  request's credential headers (``Authorization``, ``Proxy-Authorization``, ``Cookie``,
  ``X-Api-Key``, ``X-Auth-Token`` by default, configurable) and credential query
  parameters (``api_key``, ``token``, ``sig``...; these are left out of ``params``). Two
  requests with different credentials therefore never share an entry, and the key
  name does not leak the credential (the secret stops offline guessing of weak
  tokens). A request carrying credentials when no secret is configured gets no key
  at all (``None``): it is not cached.

Values are canonicalised before hashing: pydantic models become their JSON-mode dump,
mappings are sorted by key and sets by value, so the same arguments give the same key
in every process (``PYTHONHASHSEED`` cannot reorder them). The digest is truncated to
128 bits (32 hex characters), which bounds every Redis key name whatever the input.

Custom keys (the seed's ``key_func``) hash only the service and the user's string, so
``clear(custom_key(service=..., key="product:123", function=...))`` finds the entry
without knowing which method wrote it.

``function`` names the generation *scope* of an entry (for example
``"ProductService.get_product"`` or ``"GET /products"``): clearing a function bumps its
generation, which invalidates all its entries at once (see ``msfw_redis._cache.cache``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from msfw_redis._config import DEFAULT_CACHE_CREDENTIAL_HEADERS, DEFAULT_CACHE_CREDENTIAL_PARAMS
from msfw_redis._store.keys import canonical_service_name

__all__ = [
    "DEFAULT_CREDENTIAL_HEADERS",
    "DEFAULT_CREDENTIAL_PARAMS",
    "KEY_DIGEST_CHARS",
    "MIN_SECRET_BYTES",
    "CacheKey",
    "Params",
    "canonical_json",
    "credential_fingerprint",
    "custom_key",
    "function_field",
    "request_key",
    "variant_key",
]

#: Request headers that carry a caller's identity; entries are never shared across them.
DEFAULT_CREDENTIAL_HEADERS: tuple[str, ...] = DEFAULT_CACHE_CREDENTIAL_HEADERS
#: Query parameters that carry a credential; keyed like the headers, never by value.
DEFAULT_CREDENTIAL_PARAMS: tuple[str, ...] = DEFAULT_CACHE_CREDENTIAL_PARAMS
#: Hex characters kept of the SHA-256 digest (128 bits).
KEY_DIGEST_CHARS = 32
#: Shortest accepted HMAC secret. Shorter secrets make credential fingerprints guessable.
MIN_SECRET_BYTES = 16
_KEY_FORMAT = "msfw-cache-key/1"
_CUSTOM_FORMAT = "msfw-cache-custom/1"
_LABEL_MAX = 120
_FUNCTION_FIELD_CHARS = 24

Params = Mapping[str, object] | Iterable[tuple[str, object]]


@dataclass(frozen=True, slots=True)
class CacheKey:
    """The identity of one cache entry.

    Attributes:
        service: the service whose ``{hash tag}`` the entry's Redis keys carry.
        function: the generation scope (method or route) that ``clear_function``
            invalidates; a readable name, never argument values.
        digest: 32 hex characters identifying the entry within the service.
        label: a short readable description for logs (``"GET /users/{id}"``); it
            never contains argument values or credentials.
    """

    service: str
    function: str
    digest: str
    label: str

    @property
    def function_field(self) -> str:
        """The field of the service's generation hash that holds this function's generation."""
        return function_field(self.function)


@functools.lru_cache(maxsize=4096)  # on every lookup's hot path: hash each name once
def function_field(function: str) -> str:
    """The generation-hash field for ``function`` (``f`` + 24 hex characters).

    Hashing bounds the field length and keeps arbitrary names (spaces, braces) out of
    Redis; the ``f`` prefix keeps it apart from the service-wide field ``_``.
    """
    if not isinstance(function, str) or not function:
        raise ValueError(f"invalid cache function name {function!r}: must be a non-empty string")
    digest = hashlib.sha256(function.encode("utf-8")).hexdigest()
    return "f" + digest[:_FUNCTION_FIELD_CHARS]


def _canonical(value: object, where: str) -> Any:
    """``value`` as plain JSON data with a deterministic order."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Enum):
        return _canonical(value.value, where)
    if isinstance(value, BaseModel):
        return _canonical(value.model_dump(mode="json"), where)
    if isinstance(value, Mapping):
        items = [(_canonical_text(k, where), _canonical(v, where)) for k, v in value.items()]
        return {"__map__": sorted(items, key=lambda kv: kv[0])}
    if isinstance(value, (set, frozenset)):
        members = [_canonical(v, where) for v in value]
        return {"__set__": sorted(members, key=_dumps)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, where) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__bytes__": bytes(value).hex()}
    try:
        plain = to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise TypeError(
            f"cannot build a cache key from {where}: {type(value).__name__} is not "
            "JSON-serialisable; pass a key_func or leave it out of vary_on"
        ) from exc
    return _canonical(plain, where)


def _canonical_text(value: object, where: str) -> str:
    plain = _canonical(value, where)
    return plain if isinstance(plain, str) else _dumps(plain)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: object, *, where: str = "value") -> str:
    """The canonical JSON text of ``value`` (sorted mappings and sets, models dumped).

    Raises ``TypeError`` naming ``where`` when a value cannot be serialised.
    """
    return _dumps(_canonical(value, where))


def _sorted_params(params: Params | None, where: str) -> list[list[Any]]:
    if params is None:
        return []
    pairs = params.items() if isinstance(params, Mapping) else params
    out = [[str(name), _canonical(value, f"{where} {name!r}")] for name, value in pairs]
    # A stable sort by name only: repeated names keep their relative order.
    out.sort(key=lambda pair: pair[0])
    return out


def _header_pairs(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    items: Iterable[tuple[str, str]]
    if isinstance(headers, Mapping):
        multi = getattr(headers, "multi_items", None)
        items = multi() if callable(multi) else headers.items()
    else:
        items = headers
    return [(str(k).lower(), str(v)) for k, v in items]


def _check_secret(secret: bytes | None) -> None:
    if secret is None:
        return
    if not isinstance(secret, bytes):
        raise ValueError(f"invalid cache key secret: expected bytes, got {type(secret).__name__}")
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"invalid cache key secret: {len(secret)} bytes, at least {MIN_SECRET_BYTES} required"
        )


def credential_fingerprint(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    secret: bytes | None,
    *,
    credential_headers: Iterable[str] = DEFAULT_CREDENTIAL_HEADERS,
    params: Iterable[tuple[str, str]] = (),
) -> tuple[bool, str | None]:
    """Fingerprint the credential headers (and credential query ``params``) of a request.

    Returns ``(True, None)`` when the request carries no credential, ``(True, hex)``
    with the HMAC-SHA256 fingerprint when it does and a secret is set, and
    ``(False, None)`` when it does but no secret is set: such a request must not be
    cached, since its response may be private to that caller.
    """
    _check_secret(secret)
    wanted = {h.lower() for h in credential_headers}
    pairs = _header_pairs(headers) if headers is not None else []
    found = sorted(
        [(name, value) for name, value in pairs if name in wanted]
        # '?' cannot start a header name, so a parameter never collides with a header.
        + [("?" + name, str(value)) for name, value in params],
        key=lambda pair: pair[0],
    )
    if not found:
        return True, None
    if secret is None:
        return False, None
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for name, value in found:
        # NUL separators: header names and values cannot contain NUL, so no two
        # different header lists produce the same byte string.
        mac.update(name.encode("latin-1", "replace") + b"\x00")
        mac.update(value.encode("utf-8", "surrogateescape") + b"\x00")
    return True, mac.hexdigest()


def _label(*parts: str) -> str:
    text = " ".join(p for p in parts if p)
    return text if len(text) <= _LABEL_MAX else text[: _LABEL_MAX - 3] + "..."


def request_key(
    *,
    service: str,
    method: str,
    path: str,
    params: Params | None = None,
    vary: Mapping[str, object] | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    vary_headers: Iterable[str] = (),
    secret: bytes | None = None,
    function: str | None = None,
    credential_headers: Iterable[str] = DEFAULT_CREDENTIAL_HEADERS,
    credential_params: Iterable[str] = DEFAULT_CREDENTIAL_PARAMS,
) -> CacheKey | None:
    """The key of a request, or ``None`` when the request must not be cached.

    Args:
        service: the called service (validated like every service name).
        method: the HTTP method (case-insensitive).
        path: the route template or the concrete path.
        params: arguments or query parameters, as a mapping or as ``(name, value)``
            pairs (repeated names allowed).
        vary: extra values the response depends on (``vary_on``), by name.
        headers: the outgoing request headers; credential headers are fingerprinted,
            and those named in ``vary_headers`` are keyed by value.
        vary_headers: request header names whose values the response varies on.
        secret: the HMAC secret for credential fingerprints (at least 16 bytes).
        function: the generation scope; defaults to ``"METHOD path"``.
        credential_headers: header names treated as credentials.
        credential_params: query parameter names treated as credentials (matched
            case-insensitively): fingerprinted with the headers, left out of ``params``.

    Returns ``None`` when the request carries a credential and ``secret`` is ``None``.
    Raises ``TypeError`` when a value cannot be serialised, ``ValueError`` for an
    invalid service name or secret.
    """
    service = canonical_service_name(service)
    verb = method.upper()
    secret_params = {p.lower() for p in credential_params}
    plain_params: Params | None = params
    found_params: list[tuple[str, str]] = []
    if params is not None and secret_params:
        pairs = list(params.items() if isinstance(params, Mapping) else params)
        found_params = [
            (str(n).lower(), str(v)) for n, v in pairs if str(n).lower() in secret_params
        ]
        if found_params:
            plain_params = [(n, v) for n, v in pairs if str(n).lower() not in secret_params]
    shareable, credential = credential_fingerprint(
        headers, secret, credential_headers=credential_headers, params=found_params
    )
    if not shareable:
        return None
    vary_items: dict[str, object] = dict(vary or {})
    # Credential headers are already keyed by their HMAC; keying them by raw value too
    # would let anyone who can list keys test guesses against an unsalted hash.
    wanted = {h.lower() for h in vary_headers} - {h.lower() for h in credential_headers}
    if wanted and headers is not None:
        for name, value in _header_pairs(headers):
            if name in wanted:
                vary_items.setdefault(f"header:{name}", [])
                bucket = vary_items[f"header:{name}"]
                if isinstance(bucket, list):
                    bucket.append(value)
    document = [
        _KEY_FORMAT,
        service,
        verb,
        path,
        _sorted_params(plain_params, "parameter"),
        _sorted_params(vary_items, "vary_on value"),
        credential,
    ]
    digest = hashlib.sha256(_dumps(document).encode("utf-8")).hexdigest()[:KEY_DIGEST_CHARS]
    scope = function if function is not None else f"{verb} {path}"
    function_field(scope)
    return CacheKey(service=service, function=scope, digest=digest, label=_label(verb, path))


def variant_key(
    key: CacheKey,
    names: Iterable[str],
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    *,
    credential_headers: Iterable[str] = DEFAULT_CREDENTIAL_HEADERS,
) -> CacheKey:
    """The key of one ``Vary`` variant of ``key``: its digest also covers the values of
    the request headers ``names`` (lower-cased, sorted; repeats kept in order).

    Credential headers are left out by value: ``key`` already carries their HMAC.
    """
    skip = {h.lower() for h in credential_headers}
    wanted = sorted({n.strip().lower() for n in names} - skip)
    pairs = _header_pairs(headers) if headers is not None else []
    values = [[name, [v for n, v in pairs if n == name]] for name in wanted]
    document = ["msfw-cache-variant/1", key.digest, values]
    digest = hashlib.sha256(_dumps(document).encode("utf-8")).hexdigest()[:KEY_DIGEST_CHARS]
    return CacheKey(
        service=key.service, function=key.function, digest=digest, label=key.label + " (vary)"
    )


def custom_key(*, service: str, key: str, function: str) -> CacheKey:
    """The key for a user-chosen string (the seed's ``key_func``).

    The digest covers only ``service`` and ``key``, so clearing by that string works
    from anywhere; ``function`` still sets the generation scope of entries written
    through it.
    """
    service = canonical_service_name(service)
    if not isinstance(key, str) or not key:
        raise ValueError(f"invalid cache key {key!r}: key_func must return a non-empty string")
    function_field(function)
    document = [_CUSTOM_FORMAT, service, key]
    digest = hashlib.sha256(_dumps(document).encode("utf-8")).hexdigest()[:KEY_DIGEST_CHARS]
    # The label names the function, not the key string, which may hold argument values.
    return CacheKey(
        service=service, function=function, digest=digest, label=_label(function, "(custom key)")
    )
