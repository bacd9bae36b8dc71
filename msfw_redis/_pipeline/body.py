"""Reading a response body within ``max_response_bytes`` of *decoded* content.

httpx decodes ``Content-Encoding`` for us, but without an output bound: a 291 kB gzip
body that inflates to 300 MB is fully inflated in memory before anyone can count it
(``aread()``), and even ``aiter_bytes()`` inflates each network chunk whole. So the
send step reads the *raw* stream (``aiter_raw``) and decodes it here, asking each
decompressor for at most what is left of the limit (``zlib``'s ``max_length``), so
memory stays within the limit whatever the compression ratio.

Encodings: ``gzip`` / ``x-gzip``, ``deflate`` (zlib-wrapped or raw), ``identity``,
and, where httpx supports them because the package is installed, ``br`` (brotli or
brotlicffi) and ``zstd`` (zstandard). Brotli >= 1.2 bounds each call's output
(``output_buffer_limit``); older brotli and zstandard have no output bound, so their
input is fed in small pieces and checked after each; the overshoot is at most one
piece's expansion. Several encodings (``gzip, br``) are undone in reverse order. An
unknown encoding fails with :class:`ResponseDecodeError`.

:class:`ResponseTooLargeError` is a :class:`~msfw_redis.ServiceClientError` (the
origin's answer was unacceptable, not a failure of the origin): it is not a breaker
failure, and it names the limit.
"""

from __future__ import annotations

import importlib
import zlib
from typing import Any, Protocol

import httpx

from msfw_redis._exceptions import ResponseTooLargeError, ServiceClientError

__all__ = [
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "read_decoded",
    "supported_encodings",
]

_BROTLI_PIECE = 256
_ZSTD_PIECE = 16


class ResponseDecodeError(ServiceClientError, ValueError):
    """The response body cannot be decoded (unknown or corrupt ``Content-Encoding``)."""


class _Decoder(Protocol):
    def decode(self, data: bytes, room: int) -> bytes:
        """Decode ``data``, returning at most ``room + 1`` bytes (one more flags excess)."""
        ...

    def flush(self, room: int) -> bytes: ...


class _Identity:
    def decode(self, data: bytes, room: int) -> bytes:
        return data

    def flush(self, room: int) -> bytes:
        return b""


class _Zlib:
    """gzip and deflate with a bounded output per call (``max_length``)."""

    def __init__(self, wbits: int, *, deflate: bool = False) -> None:
        self._obj = zlib.decompressobj(wbits)
        self._deflate = deflate
        self._first = True

    def decode(self, data: bytes, room: int) -> bytes:
        if self._first and self._deflate and data:
            self._first = False
            try:
                return self._obj.decompress(data, room + 1)
            except zlib.error:
                # Some servers send raw deflate without the zlib wrapper.
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
        self._first = False
        return self._obj.decompress(data, room + 1)

    def more(self, room: int) -> bytes:
        """Output held back by ``max_length`` (input already consumed)."""
        tail = self._obj.unconsumed_tail
        return self._obj.decompress(tail, room + 1) if tail else b""

    def flush(self, room: int) -> bytes:
        return self._obj.flush(room + 1) if room >= 0 else b""


class _Brotli:
    def __init__(self, module: Any) -> None:
        self._obj = module.Decompressor()
        # brotli >= 1.2 bounds each call's output; older versions only bound the input piece.
        self._bounded = hasattr(self._obj, "can_accept_more_data")

    def decode(self, data: bytes, room: int) -> bytes:
        out = bytearray()
        for start in range(0, len(data), _BROTLI_PIECE):
            piece = data[start : start + _BROTLI_PIECE]
            if not self._bounded:
                out += self._obj.process(piece)
            else:
                out += self._obj.process(piece, output_buffer_limit=max(1, room + 1 - len(out)))
                # Drain what the bound held back, still within the limit.
                while len(out) <= room and not self._obj.can_accept_more_data():
                    out += self._obj.process(b"", output_buffer_limit=max(1, room + 1 - len(out)))
            if len(out) > room:
                break
        return bytes(out)

    def flush(self, room: int) -> bytes:
        return b""


class _Zstd:
    def __init__(self, module: Any) -> None:
        self._obj = module.ZstdDecompressor().decompressobj()

    def decode(self, data: bytes, room: int) -> bytes:
        # zstandard's decompressobj has no output bound, so input goes in small pieces:
        # one RLE block (4 bytes) decodes to at most 128 KiB, so a piece overshoots the
        # limit by at most _ZSTD_PIECE / 4 blocks.
        out = bytearray()
        for start in range(0, len(data), _ZSTD_PIECE):
            out += self._obj.decompress(data[start : start + _ZSTD_PIECE])
            if len(out) > room:
                break
        return bytes(out)

    def flush(self, room: int) -> bytes:
        return b""


def _optional(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def supported_encodings() -> tuple[str, ...]:
    """The content codings this process can decode within the limit."""
    found = ["identity", "gzip", "x-gzip", "deflate"]
    if _optional("brotli", "brotlicffi") is not None:
        found.append("br")
    if _optional("zstandard") is not None:
        found.append("zstd")
    return tuple(found)


def _decoder(coding: str) -> _Decoder | None:
    if coding in ("", "identity"):
        return _Identity()
    if coding in ("gzip", "x-gzip"):
        return _Zlib(zlib.MAX_WBITS | 16)
    if coding == "deflate":
        return _Zlib(zlib.MAX_WBITS, deflate=True)
    if coding == "br":
        module = _optional("brotli", "brotlicffi")
        return _Brotli(module) if module is not None else None
    if coding == "zstd":
        module = _optional("zstandard")
        return _Zstd(module) if module is not None else None
    return None


class _Chain:
    """The decoders of ``Content-Encoding`` in the order they must be undone."""

    def __init__(self, content_encoding: str) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        self.decoders: list[_Decoder] = []
        for coding in reversed(codings):
            decoder = _decoder(coding)
            if decoder is None:
                raise ValueError(f"unsupported Content-Encoding {coding!r}")
            self.decoders.append(decoder)

    def feed(self, data: bytes, room: int) -> bytes:
        for decoder in self.decoders:
            out = decoder.decode(data, room)
            if isinstance(decoder, _Zlib):
                # Drain what max_length held back, still bounded by the room left.
                while len(out) <= room:
                    extra = decoder.more(room - len(out))
                    if not extra:
                        break
                    out += extra
            data = out
        return data

    def finish(self, room: int) -> bytes:
        data = b""
        for decoder in self.decoders:
            data = (decoder.decode(data, room) if data else b"") + decoder.flush(room)
        return data


async def read_decoded(
    response: httpx.Response, limit: int, *, service: str | None, endpoint: str | None
) -> bytes:
    """The decoded body of a streamed ``response``, at most ``limit`` bytes.

    Raises :class:`ResponseTooLargeError` as soon as the decoded size passes ``limit``
    (the rest is neither read nor decoded) and :class:`ResponseDecodeError` for a body
    that does not decode. The response is not closed here.
    """
    try:
        already = response.content  # a transport that handed back a response already read
    except httpx.ResponseNotRead:
        pass
    else:
        if len(already) > limit:
            raise ResponseTooLargeError(
                f"decoded response exceeds max_response_bytes={limit}",
                status_code=response.status_code,
                service_name=service,
                endpoint=endpoint,
            )
        return already
    try:
        chain = _Chain(response.headers.get("content-encoding", ""))
    except ValueError as exc:
        raise ResponseDecodeError(
            f"cannot decode the response: {exc}",
            status_code=response.status_code,
            service_name=service,
            endpoint=endpoint,
        ) from None
    parts: list[bytes] = []
    size = 0

    def too_large() -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"decoded response exceeds max_response_bytes={limit} "
            f"(Content-Encoding: {response.headers.get('content-encoding', 'identity')})",
            status_code=response.status_code,
            service_name=service,
            endpoint=endpoint,
        )

    try:
        async for raw in response.aiter_raw():
            out = chain.feed(raw, limit - size)
            size += len(out)
            if size > limit:
                raise too_large()
            parts.append(out)
        out = chain.finish(limit - size)
    except zlib.error as exc:
        raise ResponseDecodeError(
            f"response body does not decode: {exc}",
            status_code=response.status_code,
            service_name=service,
            endpoint=endpoint,
        ) from None
    size += len(out)
    if size > limit:
        raise too_large()
    parts.append(out)
    return b"".join(parts)
