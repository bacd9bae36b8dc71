"""The decoded-size bound of ``_pipeline/body.py``: gzip bombs stop at the limit."""

from __future__ import annotations

import gzip
import resource
import zlib
from typing import Any

import httpx
import pytest

from msfw_redis import ServiceClientError
from msfw_redis._pipeline.body import ResponseDecodeError, ResponseTooLargeError, read_decoded
from msfw_redis.testing import run_in_processes

LIMIT = 1 << 20  # 1 MiB
BOMB_BYTES = 300 * 1000 * 1000  # decodes to 300 MB


def gzip_bomb(size: int = BOMB_BYTES) -> bytes:
    """``size`` zero bytes, gzipped in chunks (never held decoded in memory)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    parts = [packer.compress(zeros) for _ in range(size // len(zeros))]
    parts.append(packer.flush())
    return b"".join(parts)


def streamed(body: bytes, encoding: str | None, piece: int = 65536) -> httpx.Response:
    """A streamed response whose raw body arrives in ``piece``-byte chunks."""

    async def chunks() -> Any:
        for start in range(0, len(body), piece):
            yield body[start : start + piece]

    headers = {"content-encoding": encoding} if encoding else {}
    return httpx.Response(200, headers=headers, content=chunks())


async def test_gzip_within_limit_decodes() -> None:
    """A gzip body under the limit comes back decoded, byte for byte."""
    data = b"hello world " * 1000
    got = await read_decoded(
        streamed(gzip.compress(data), "gzip"), LIMIT, service="s", endpoint="/"
    )
    assert got == data


async def test_deflate_raw_and_wrapped() -> None:
    """deflate is accepted zlib-wrapped and raw (servers send both)."""
    data = b"abc" * 5000
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw_body = raw.compress(data) + raw.flush()
    for body in (zlib.compress(data), raw_body):
        assert (
            await read_decoded(streamed(body, "deflate"), LIMIT, service=None, endpoint=None)
            == data
        )


async def test_exact_limit_is_allowed_one_more_byte_is_not() -> None:
    """The limit is inclusive: LIMIT decoded bytes pass, LIMIT + 1 fail."""
    ok = gzip.compress(bytes(LIMIT))
    assert (
        len(await read_decoded(streamed(ok, "gzip"), LIMIT, service=None, endpoint=None)) == LIMIT
    )
    with pytest.raises(ResponseTooLargeError):
        await read_decoded(
            streamed(gzip.compress(bytes(LIMIT + 1)), "gzip"), LIMIT, service=None, endpoint=None
        )


async def test_identity_over_limit_fails() -> None:
    """An uncompressed body over the limit fails too."""
    with pytest.raises(ResponseTooLargeError):
        await read_decoded(streamed(bytes(LIMIT + 10), None), LIMIT, service=None, endpoint=None)


async def test_unknown_and_corrupt_encodings_fail_clearly() -> None:
    """An unknown coding or a corrupt gzip body is a ResponseDecodeError, a ServiceClientError."""
    with pytest.raises(ResponseDecodeError, match="unsupported Content-Encoding 'snappy'"):
        await read_decoded(streamed(b"x", "snappy"), LIMIT, service=None, endpoint=None)
    with pytest.raises(ServiceClientError, match="does not decode"):
        await read_decoded(streamed(b"not gzip at all", "gzip"), LIMIT, service=None, endpoint=None)


async def bomb_worker(bomb: bytes, encoding: str = "gzip") -> list[Any]:
    """In a fresh process: peak RSS growth (bytes) while a 300 MB ``encoding`` bomb is read."""
    # Warm up the decoder path so imports and first allocations are not counted.
    await read_decoded(
        streamed(gzip.compress(b"x" * 1000), "gzip"), LIMIT, service=None, endpoint=None
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    message = ""
    try:
        await read_decoded(streamed(bomb, encoding), LIMIT, service="bomb", endpoint="/bomb")
    except ResponseTooLargeError as exc:
        message = str(exc)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return [after - before, message]


def test_gzip_bomb_rss_stays_under_three_times_the_limit() -> None:
    """A 291 kB gzip body that inflates to 300 MB grows RSS by < 3 x the limit, with a clear error."""
    bomb = gzip_bomb()
    assert len(bomb) < 400_000
    [(growth, message)] = run_in_processes(bomb_worker, [(bomb,)], timeout=120)
    assert message.startswith(f"decoded response exceeds max_response_bytes={LIMIT}")
    assert growth < 3 * LIMIT


def brotli_bomb(size: int = BOMB_BYTES) -> bytes:
    """``size`` zero bytes, brotli-compressed in chunks."""
    brotli = pytest.importorskip("brotli")
    packer = brotli.Compressor(quality=5)
    zeros = bytes(1 << 20)
    parts = [packer.process(zeros) for _ in range(size // len(zeros))]
    parts.append(packer.finish())
    return b"".join(parts)


def zstd_bomb(size: int = BOMB_BYTES) -> bytes:
    """``size`` zero bytes, zstd-compressed in chunks (no content size in the frame)."""
    zstandard = pytest.importorskip("zstandard")
    packer = zstandard.ZstdCompressor(level=3).compressobj()
    zeros = bytes(1 << 20)
    parts = [packer.compress(zeros) for _ in range(size // len(zeros))]
    parts.append(packer.flush())
    return b"".join(parts)


@pytest.mark.parametrize(("encoding", "make"), [("br", brotli_bomb), ("zstd", zstd_bomb)])
def test_brotli_and_zstd_bombs_stop_at_the_limit(encoding: str, make: Any) -> None:
    """A 300 MB br or zstd bomb grows RSS by < 3 x the limit and fails with the clear error."""
    bomb = make()
    assert len(bomb) < 1_000_000
    [(growth, message)] = run_in_processes(bomb_worker, [(bomb, encoding)], timeout=120)
    assert message.startswith(f"decoded response exceeds max_response_bytes={LIMIT}")
    assert growth < 3 * LIMIT


@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_brotli_and_zstd_within_limit_decode(encoding: str) -> None:
    """A br or zstd body under the limit (and exactly at it) comes back decoded, byte for byte."""
    data = bytes(range(256)) * 2000 + bytes(LIMIT - 512_000)
    assert len(data) == LIMIT
    if encoding == "br":
        body = pytest.importorskip("brotli").compress(data)
    else:
        body = pytest.importorskip("zstandard").ZstdCompressor().compress(data)
    got = await read_decoded(
        streamed(body, encoding, piece=1000), LIMIT, service=None, endpoint=None
    )
    assert got == data
