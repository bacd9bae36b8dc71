"""Cache entries: the msgpack envelope, the codecs that fill it, and HTTP storability.

An entry is one Redis hash (see ``lua/cache_fill.lua``)::

    v   the envelope below (msgpack bytes, written by Python)
    sa  stored-at, fu fresh-until, su stale-until: server ms, written by the script
        from ``TIME``, so no replica's clock enters shared state
    g   the service:function generation the entry was written under

The envelope is a msgpack map with short keys, never pickle::

    {"v": 1, "k": "d", "d": <JSON-mode data>}                          typed value
    {"v": 1, "k": "r", "s": status, "h": [[name, value], ...], "b": body,
     "m": 1 if it must be revalidated before use (optional),
     "y": [[header, [request values...]], ...] its Vary variant (optional)}  HTTP response
    {"v": 1, "k": "e", "s": status, "m": message, "t": error type,
     "n": service, "p": endpoint, "d": response body}                  negative entry

A reader gets the decoded body back (the cache keeps the server-time stamps beside it,
and :func:`age_seconds` turns them into an ``Age``). Anything that does not decode
(garbage bytes, another schema version, a status outside 100-599 such as -1, a value
the codec rejects) raises :class:`CorruptEntryError`; the cache treats it as a miss,
deletes it and counts it. An envelope longer than the policy's ``max_entry_bytes``
raises :class:`EntryTooLargeError` and is not stored.

Codecs turn a call's value into a body and back:

* :class:`TypeAdapterCodec` stores ``TypeAdapter(annotation).dump_python(value,
  mode="json")`` and validates it again on read, so pydantic models, ``List[Model]``
  and plain JSON values round-trip, and a changed model fails validation (a miss)
  instead of returning a wrong shape.
* :class:`HttpResponseCodec` stores an ``httpx.Response``'s status, end-to-end
  headers and decoded body, with the request header values its ``Vary`` names.
  Responses that a shared cache must not keep (``Cache-Control: no-store`` or
  ``private``, ``no-cache`` without a validator, ``Set-Cookie``, ``Vary: *``) encode to
  ``None``: not stored. The full RFC 9111 rules are in ``msfw_redis._cache.rules``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast, get_args, get_origin

import httpx
import msgpack
from pydantic import TypeAdapter
from pydantic_core import to_json, to_jsonable_python

from msfw_redis._exceptions import MsfwError, ServiceClientError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "DEFAULT_MAX_ENTRY_BYTES",
    "ENTRY_SCHEMA_VERSION",
    "CacheCodec",
    "CorruptEntryError",
    "DataBody",
    "EntryBody",
    "EntryTooLargeError",
    "ErrorBody",
    "HttpResponseCodec",
    "ResponseBody",
    "TypeAdapterCodec",
    "age_seconds",
    "decode_envelope",
    "encode_envelope",
    "REVALIDATE_EXTENSION",
    "VARY_EXTENSION",
    "request_vary_values",
    "response_is_storable",
]

ENTRY_SCHEMA_VERSION = 1
#: Default largest envelope stored, in bytes (1 MiB).
DEFAULT_MAX_ENTRY_BYTES = 1 << 20

T = TypeVar("T")

# Headers that describe one hop or the wire encoding, not the response: the stored body
# is already decoded, so replaying Content-Encoding would make httpx decode it twice.
_NOT_STORED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
        "content-encoding",
        "content-length",
    }
)
_NOT_STORABLE_DIRECTIVES = frozenset({"no-store", "private"})
#: Extension under which a decoded response carries its stored Vary variant.
VARY_EXTENSION = "msfw_vary"
#: Extension marking a decoded response that must be revalidated before use.
REVALIDATE_EXTENSION = "msfw_revalidate"
VaryValues = tuple[tuple[str, tuple[str, ...]], ...]


class CorruptEntryError(MsfwError, ValueError):
    """A stored entry could not be decoded; the cache treats it as a miss."""


class EntryTooLargeError(MsfwError, ValueError):
    """An envelope exceeds the size limit; it is not stored."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"cache entry of {size} bytes exceeds the {limit}-byte limit")
        self.size = size
        self.limit = limit


@dataclass(frozen=True, slots=True)
class DataBody:
    """A typed call's value as JSON-mode data (dicts, lists, str, int, float, bool, None)."""

    data: Any


@dataclass(frozen=True, slots=True)
class ResponseBody:
    """An HTTP response: status, end-to-end headers (in order, repeats kept) and body.

    ``revalidate`` marks an entry never to be served without revalidation (``no-cache``,
    ``max-age=0``, ``must-revalidate`` once stale); ``vary`` holds, per header its
    ``Vary`` names, the request's values when it was fetched.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    revalidate: bool = False
    vary: VaryValues = ()


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """A negative entry: a ``ServiceClientError`` that ``cache_on_error`` keeps briefly."""

    status_code: int | None
    message: str
    error_type: str
    service_name: str | None = None
    endpoint: str | None = None
    response_body: Any = None

    @classmethod
    def from_error(cls, exc: ServiceClientError) -> ErrorBody:
        """The body for ``exc``; a response body that is not JSON-like is dropped."""
        try:
            body = to_jsonable_python(exc.response_body)
        except (TypeError, ValueError):
            body = None
        return cls(
            status_code=exc.status_code,
            message=str(exc),
            error_type=type(exc).__name__,
            service_name=exc.service_name,
            endpoint=exc.endpoint,
            response_body=body,
        )

    def to_error(self) -> ServiceClientError:
        """A fresh ``ServiceClientError`` equal to the one that was cached."""
        exc = ServiceClientError(
            self.message,
            status_code=self.status_code,
            service_name=self.service_name,
            endpoint=self.endpoint,
            response_body=self.response_body,
        )
        exc.add_note(f"served from the response cache (negative entry of {self.error_type})")
        return exc


EntryBody = DataBody | ResponseBody | ErrorBody


def age_seconds(stored_at_ms: int, now_ms: int) -> float:
    """Seconds from ``stored_at_ms`` to ``now_ms`` (server time), never negative."""
    return max(0, now_ms - stored_at_ms) / 1000.0


def encode_envelope(body: EntryBody, *, max_bytes: int) -> bytes:
    """The msgpack envelope of ``body``; raises :class:`EntryTooLargeError` past ``max_bytes``.

    Raises ``TypeError`` when the body holds something msgpack cannot encode.
    """
    doc: dict[str, Any]
    if isinstance(body, DataBody):
        doc = {"v": ENTRY_SCHEMA_VERSION, "k": "d", "d": body.data}
    elif isinstance(body, ResponseBody):
        doc = {
            "v": ENTRY_SCHEMA_VERSION,
            "k": "r",
            "s": body.status,
            "h": [[name, value] for name, value in body.headers],
            "b": body.body,
        }
        if body.revalidate:
            doc["m"] = 1
        if body.vary:
            doc["y"] = [[name, list(values)] for name, values in body.vary]
    else:
        doc = {
            "v": ENTRY_SCHEMA_VERSION,
            "k": "e",
            "s": body.status_code,
            "m": body.message,
            "t": body.error_type,
            "n": body.service_name,
            "p": body.endpoint,
            "d": body.response_body,
        }
    blob: bytes = msgpack.packb(doc, use_bin_type=True)
    if len(blob) > max_bytes:
        raise EntryTooLargeError(len(blob), max_bytes)
    return blob


def _need(doc: dict[Any, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind):
        raise CorruptEntryError(f"cache envelope field {name!r} is {type(value).__name__}")
    return value


def decode_envelope(blob: bytes) -> EntryBody:
    """The body in ``blob``; raises :class:`CorruptEntryError` for anything else."""
    try:
        doc = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CorruptEntryError(f"cache envelope is not msgpack: {exc}") from exc
    if not isinstance(doc, dict):
        raise CorruptEntryError(f"cache envelope is a {type(doc).__name__}, not a map")
    version = doc.get("v")
    if version != ENTRY_SCHEMA_VERSION:
        raise CorruptEntryError(f"cache envelope has schema version {version!r}")
    kind = doc.get("k")
    if kind == "d":
        if "d" not in doc:
            raise CorruptEntryError("cache envelope lacks its data")
        return DataBody(doc["d"])
    if kind == "r":
        status = _need(doc, "s", int)
        raw_headers = _need(doc, "h", list)
        headers: list[tuple[str, str]] = []
        for pair in raw_headers:
            if not (
                isinstance(pair, list)
                and len(pair) == 2
                and isinstance(pair[0], str)
                and isinstance(pair[1], str)
            ):
                raise CorruptEntryError("cache envelope has a malformed header")
            headers.append((pair[0], pair[1]))
        if not 100 <= status <= 599:
            # A status no server sends (an old bug stored -1): never serve it as a success.
            raise CorruptEntryError(f"cache envelope has an impossible status {status}")
        return ResponseBody(
            status,
            tuple(headers),
            _need(doc, "b", bytes),
            revalidate=doc.get("m") == 1,
            vary=_vary_values(doc.get("y")),
        )
    if kind == "e":
        status_code = doc.get("s")
        if status_code is not None and (
            not isinstance(status_code, int) or not 100 <= status_code <= 599
        ):
            raise CorruptEntryError("cache envelope has a malformed status")
        return ErrorBody(
            status_code=status_code,
            message=_need(doc, "m", str),
            error_type=_need(doc, "t", str),
            service_name=doc.get("n") if isinstance(doc.get("n"), str) else None,
            endpoint=doc.get("p") if isinstance(doc.get("p"), str) else None,
            response_body=doc.get("d"),
        )
    raise CorruptEntryError(f"cache envelope has unknown kind {kind!r}")


def _vary_values(raw: Any) -> VaryValues:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise CorruptEntryError("cache envelope has a malformed vary list")
    out: list[tuple[str, tuple[str, ...]]] = []
    for item in raw:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], list)
            and all(isinstance(v, str) for v in item[1])
        ):
            raise CorruptEntryError("cache envelope has a malformed vary entry")
        out.append((item[0], tuple(item[1])))
    return tuple(out)


def request_vary_values(names: Iterable[str], request: httpx.Request | None) -> VaryValues:
    """The values of the request headers ``names`` (lower-cased, sorted), repeats kept."""
    headers = request.headers if request is not None else httpx.Headers()
    return tuple((name, tuple(headers.get_list(name))) for name in sorted(set(names)))


class CacheCodec(Protocol[T]):
    """Turns a call's value into an entry body and back.

    ``encode`` returns ``None`` for a value that must not be stored. ``decode`` raises
    any exception for a body it cannot turn back into a value; the cache then treats
    the entry as corrupt (a miss, deleted, counted).
    """

    def encode(self, value: T) -> DataBody | ResponseBody | None: ...

    def decode(self, body: DataBody | ResponseBody) -> T: ...


class TypeAdapterCodec(Generic[T]):
    """Stores values of one type as JSON-mode data and validates them on read.

    ``annotation`` is the function's return annotation (``User``, ``List[User]``,
    ``dict[str, int]``, ``Any``...). Reading validates in JSON mode, the mirror of the
    dump, so strict models and types such as ``datetime`` or ``UUID`` round-trip.
    """

    def __init__(self, annotation: Any) -> None:
        self.annotation = annotation
        self._adapter: TypeAdapter[T] = TypeAdapter(annotation)
        # The container a JSON-mode dump of this annotation is already a valid value
        # of (``dict[str, Any]``, ``list[Any]``): validation is then the identity.
        self._plain: type | None = _plain_container(annotation)

    def encode(self, value: T) -> DataBody:
        """The JSON-mode dump of ``value``."""
        return DataBody(self._adapter.dump_python(value, mode="json"))

    def decode(self, body: DataBody | ResponseBody) -> T:
        """A freshly validated value; raises for a response body or invalid data."""
        if not isinstance(body, DataBody):
            raise CorruptEntryError("expected a data entry, found an HTTP response entry")
        return self._adapter.validate_json(to_json(body.data))

    def decode_unshared(self, body: DataBody | ResponseBody) -> T:
        """Like :meth:`decode`, but the value may be ``body``'s own data.

        Only for a body decoded for this one call (never a near-cache copy): for an
        annotation whose validation is the identity on JSON data, the shared hit path
        then skips a JSON round trip through pydantic. Anything else is validated.
        """
        if self._plain is not None and isinstance(body, DataBody):
            data = body.data
            if self._plain is dict and type(data) is dict:
                # C-level check (no generator frame per key): msgpack hands back exact
                # str keys or none, so isinstance() is the type test here.
                if all(map(isinstance, data, _STR_FOREVER)):
                    return cast("T", data)
            elif self._plain is list and type(data) is list:
                return cast("T", data)
        return self.decode(body)


_STR_FOREVER = itertools.repeat(str)


def _plain_container(annotation: Any) -> type | None:
    """``dict`` for ``dict[str, Any]``, ``list`` for ``list[Any]``, else ``None``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict and args == (str, Any):
        return dict
    if origin is list and args == (Any,):
        return list
    return None


def _directives(values: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for value in values:
        for part in value.split(","):
            name = part.split("=", 1)[0].strip().lower()
            if name:
                found.add(name)
    return found


def response_is_storable(headers: httpx.Headers) -> bool:
    """Whether a shared cache may keep a response with these headers.

    Not stored: ``Cache-Control`` with ``no-store`` or ``private``, ``no-cache`` without
    an ``ETag`` or ``Last-Modified`` (it could only ever be refetched in full), any
    ``Set-Cookie`` (replaying one caller's cookie to another would leak a session),
    ``Vary: *``.
    """
    directives = _directives(headers.get_list("cache-control"))
    if directives & _NOT_STORABLE_DIRECTIVES:
        return False
    if "no-cache" in directives and not ("etag" in headers or "last-modified" in headers):
        return False
    if "set-cookie" in headers:
        return False
    return "*" not in {v.strip() for v in ",".join(headers.get_list("vary")).split(",")}


def _request_of(response: httpx.Response) -> httpx.Request | None:
    try:
        return response.request  # set by the pipeline
    except RuntimeError:  # a bare Response has none: its variant is 'header absent'
        return None


class HttpResponseCodec:
    """Stores ``httpx.Response`` objects: status, end-to-end headers, decoded body.

    The response must have been read (``await response.aread()``). A decoded response
    has no ``request``; callers set ``response.request`` if they need it.
    """

    def encode(self, value: httpx.Response) -> ResponseBody | None:
        """The response as a body, or ``None`` when it must not be stored."""
        if not response_is_storable(value.headers):
            return None
        headers = tuple(
            (name, val)
            for name, val in value.headers.multi_items()
            if name.lower() not in _NOT_STORED_HEADERS and name.lower() != "age"
        )
        names = {n.strip().lower() for v in value.headers.get_list("vary") for n in v.split(",")}
        names.discard("")
        vary = request_vary_values(names, _request_of(value)) if names else ()
        return ResponseBody(value.status_code, headers, value.content, vary=vary)

    def decode(self, body: DataBody | ResponseBody) -> httpx.Response:
        """A new ``httpx.Response`` with the stored status, headers and body."""
        if not isinstance(body, ResponseBody):
            raise CorruptEntryError("expected an HTTP response entry, found a data entry")
        return httpx.Response(
            body.status,
            headers=list(body.headers),
            content=body.body,
            extensions={VARY_EXTENSION: body.vary, REVALIDATE_EXTENSION: body.revalidate},
        )
