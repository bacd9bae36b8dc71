"""The hot-path shortcuts in the send and attempt-timeout steps keep what they replaced."""

from __future__ import annotations

import gzip
from types import SimpleNamespace

import httpx
import pytest

from msfw_redis import ResponseTooLargeError
from msfw_redis._pipeline.steps import CALL_KEY, AttemptTimeoutStep, SendStep


class _Recorder(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.seen: list[dict[str, float | None]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.extensions["timeout"])
        return httpx.Response(200)


def test_timeout_extension_is_built_once_but_each_request_gets_its_own() -> None:
    step = AttemptTimeoutStep(_Recorder())
    first = step._timeout_extension(2.5)
    first["read"] = 99.0  # a transport that edits its copy must not change the next call's
    second = step._timeout_extension(2.5)
    assert second == httpx.Timeout(2.5).as_dict()
    assert first is not second
    assert step._timeout_extension(0.5) == httpx.Timeout(0.5).as_dict()


def _request() -> httpx.Request:
    # SendStep reads only the service name from the call context.
    return httpx.Request(
        "GET", "http://svc/x", extensions={CALL_KEY: SimpleNamespace(service="svc")}
    )


def _send_step(response: httpx.Response) -> SendStep:
    async def send(request: httpx.Request) -> httpx.Response:
        return response

    return SendStep(send, max_response_bytes=1 << 20)


@pytest.mark.asyncio
async def test_identity_response_keeps_its_headers_repeated_names_included() -> None:
    request = _request()
    origin = httpx.Response(
        200,
        headers=[("x-a", "1"), ("x-a", "2"), ("content-type", "application/json")],
        stream=httpx.ByteStream(b'{"ok":1}'),
        request=request,
    )
    out = await _send_step(origin).handle_async_request(request)
    assert out.content == b'{"ok":1}'
    assert out.headers.get_list("x-a") == ["1", "2"]
    assert out.headers["content-length"] == "8"


@pytest.mark.asyncio
async def test_encoded_response_drops_encoding_and_stale_length() -> None:
    request = _request()
    packed = gzip.compress(b"hello world" * 10)
    origin = httpx.Response(
        200,
        headers=[("content-encoding", "gzip"), ("content-length", str(len(packed)))],
        stream=httpx.ByteStream(packed),
        request=request,
    )
    out = await _send_step(origin).handle_async_request(request)
    assert out.content == b"hello world" * 10
    assert "content-encoding" not in out.headers
    assert out.headers["content-length"] == str(len(b"hello world" * 10))


@pytest.mark.asyncio
async def test_declared_identity_body_within_the_limit_is_read_in_place() -> None:
    request = _request()
    origin = httpx.Response(
        200,
        headers=[("content-length", "8"), ("x-a", "1"), ("x-a", "2")],
        stream=httpx.ByteStream(b'{"ok":1}'),
        request=request,
    )
    out = await _send_step(origin).handle_async_request(request)
    assert out is origin  # no second Response on the common path
    assert out.is_closed
    assert out.content == b'{"ok":1}'
    assert out.headers.get_list("x-a") == ["1", "2"]


@pytest.mark.asyncio
async def test_a_transport_sending_past_its_declared_length_is_still_refused() -> None:
    request = _request()
    origin = httpx.Response(
        200,
        headers=[("content-length", "4")],  # a transport that does not enforce framing
        stream=httpx.ByteStream(b"x" * 64),
        request=request,
    )

    async def send(request: httpx.Request) -> httpx.Response:
        return origin

    with pytest.raises(ResponseTooLargeError):
        await SendStep(send, max_response_bytes=16).handle_async_request(request)


@pytest.mark.asyncio
async def test_a_declared_length_over_the_limit_takes_the_bounded_read() -> None:
    request = _request()
    origin = httpx.Response(
        200,
        headers=[("content-length", "64")],
        stream=httpx.ByteStream(b"x" * 64),
        request=request,
    )

    async def send(request: httpx.Request) -> httpx.Response:
        return origin

    with pytest.raises(ResponseTooLargeError):
        await SendStep(send, max_response_bytes=16).handle_async_request(request)
