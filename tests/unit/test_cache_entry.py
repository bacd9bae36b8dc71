"""Cache envelopes and codecs: round trips, corrupt input, size limit, HTTP storability."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from typing import Any

import httpx
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from msfw_redis._cache.entry import (
    ENTRY_SCHEMA_VERSION,
    CorruptEntryError,
    DataBody,
    EntryTooLargeError,
    ErrorBody,
    HttpResponseCodec,
    ResponseBody,
    TypeAdapterCodec,
    age_seconds,
    decode_envelope,
    encode_envelope,
    response_is_storable,
)
from msfw_redis._exceptions import ServiceClientError

BIG = 1 << 20


class User(BaseModel):
    id: int
    name: str
    email: str
    active: bool = True


class StrictEvent(BaseModel):
    model_config = ConfigDict(strict=True)
    at: dt.datetime
    ref: uuid.UUID


def roundtrip(codec: Any, value: Any) -> Any:
    body = codec.encode(value)
    return codec.decode(decode_envelope(encode_envelope(body, max_bytes=BIG)))


def test_pydantic_model_round_trips() -> None:
    """A model is stored as JSON-mode data and validated back into the model."""
    user = User(id=1, name="Ann", email="a@x")
    codec = TypeAdapterCodec(User)
    assert codec.encode(user) == DataBody({"id": 1, "name": "Ann", "email": "a@x", "active": True})
    back = roundtrip(codec, user)
    assert isinstance(back, User)
    assert back == user


def test_list_of_models_round_trips() -> None:
    """List[Model] round-trips to a list of model instances."""
    users = [User(id=i, name=f"u{i}", email=f"{i}@x") for i in range(3)]
    back = roundtrip(TypeAdapterCodec(list[User]), users)
    assert back == users
    assert all(isinstance(u, User) for u in back)


def test_strict_models_with_datetimes_and_uuids_round_trip() -> None:
    """Validation on read is in JSON mode, so strict datetime and UUID fields come back."""
    event = StrictEvent(at=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), ref=uuid.uuid4())
    assert roundtrip(TypeAdapterCodec(StrictEvent), event) == event


def test_changed_model_fails_validation() -> None:
    """Data that no longer fits the annotation raises on decode (the cache drops it)."""
    body = TypeAdapterCodec(dict[str, int]).encode({"a": 1})
    with pytest.raises(Exception, match="validation error"):
        TypeAdapterCodec(User).decode(body)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_any_json_value_round_trips(value: Any) -> None:
    """Any JSON value stored through an Any codec comes back equal."""
    assert roundtrip(TypeAdapterCodec(Any), value) == value


def test_http_response_round_trips_without_wire_headers() -> None:
    """Status, headers (repeats kept) and the decoded body come back; wire headers do not."""
    response = httpx.Response(
        201,
        headers=[("content-type", "application/json"), ("x-a", "1"), ("x-a", "2")],
        content=b'{"ok": true}',
    )
    response.headers["content-encoding"] = "gzip"  # the body we hold is already decoded
    codec = HttpResponseCodec()
    body = codec.encode(response)
    assert isinstance(body, ResponseBody)
    assert ("content-encoding", "gzip") not in body.headers
    back = roundtrip(codec, response)
    assert back.status_code == 201
    assert back.headers.get_list("x-a") == ["1", "2"]
    assert back.json() == {"ok": True}


@pytest.mark.parametrize(
    ("headers", "storable"),
    [
        ({}, True),
        ({"cache-control": "max-age=60, public"}, True),
        ({"cache-control": "no-store"}, False),
        ({"cache-control": "Private"}, False),
        ({"cache-control": 'private="set-cookie", max-age=10'}, False),
        ({"cache-control": "no-cache"}, False),
        ({"set-cookie": "sid=1"}, False),
        ({"vary": "Accept, *"}, False),
        ({"vary": "Accept-Encoding"}, True),
    ],
)
def test_response_storability(headers: dict[str, str], storable: bool) -> None:
    """no-store, private, no-cache, Set-Cookie and Vary: * responses are not stored."""
    assert response_is_storable(httpx.Headers(headers)) is storable
    encoded = HttpResponseCodec().encode(httpx.Response(200, headers=headers, content=b"x"))
    assert (encoded is not None) is storable


def test_error_body_round_trips_to_a_new_service_client_error() -> None:
    """A negative entry re-raises as a ServiceClientError with status, body and a note."""
    exc = ServiceClientError(
        "not found", status_code=404, service_name="s", endpoint="/x", response_body={"e": 1}
    )
    body = ErrorBody.from_error(exc)
    back = decode_envelope(encode_envelope(body, max_bytes=BIG))
    assert back == body
    assert isinstance(back, ErrorBody)
    again = back.to_error()
    assert again is not exc
    assert (again.status_code, str(again), again.response_body) == (404, "not found", {"e": 1})
    assert any("negative entry" in note for note in again.__notes__)


def test_error_body_drops_an_unserialisable_response_body() -> None:
    """A response body that is not JSON-like is left out instead of failing the store."""
    exc = ServiceClientError("boom", status_code=500, response_body=object())
    assert ErrorBody.from_error(exc).response_body is None


def test_size_limit() -> None:
    """An envelope above max_bytes raises EntryTooLargeError with its size."""
    body = DataBody("x" * 1000)
    with pytest.raises(EntryTooLargeError) as info:
        encode_envelope(body, max_bytes=100)
    assert info.value.size > 1000
    assert info.value.limit == 100
    assert encode_envelope(body, max_bytes=2000)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\xc1",  # a byte msgpack never uses
        b"garbage bytes \x00\xff",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"v": ENTRY_SCHEMA_VERSION + 1, "k": "d", "d": 1}),
        msgpack.packb({"v": ENTRY_SCHEMA_VERSION, "k": "z"}),
        msgpack.packb({"v": ENTRY_SCHEMA_VERSION, "k": "d"}),
        msgpack.packb({"v": ENTRY_SCHEMA_VERSION, "k": "r", "s": "200", "h": [], "b": b""}),
        msgpack.packb({"v": ENTRY_SCHEMA_VERSION, "k": "r", "s": 200, "h": [["a"]], "b": b""}),
        msgpack.packb({"v": ENTRY_SCHEMA_VERSION, "k": "e", "s": "x", "m": "m", "t": "T"}),
        msgpack.packb({"v": ENTRY_SCHEMA_VERSION, "k": "e", "m": 1, "t": "T"}),
    ],
)
def test_corrupt_envelopes_raise_corrupt_entry_error(blob: bytes) -> None:
    """Anything that is not a valid envelope of this schema raises CorruptEntryError."""
    with pytest.raises(CorruptEntryError):
        decode_envelope(blob)


@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_decoder(blob: bytes) -> None:
    """Random bytes decode to a body or raise CorruptEntryError, nothing else."""
    with contextlib.suppress(CorruptEntryError):
        decode_envelope(blob)


def test_codecs_refuse_the_other_kind() -> None:
    """A data codec refuses a response body and vice versa."""
    with pytest.raises(CorruptEntryError):
        TypeAdapterCodec(int).decode(ResponseBody(200, (), b""))
    with pytest.raises(CorruptEntryError):
        HttpResponseCodec().decode(DataBody(1))


def test_entry_age() -> None:
    """An entry's age comes from server-time stamps and is never negative."""
    assert age_seconds(1_000, 2_500) == 1.5
    assert age_seconds(1_000, 0) == 0.0


def test_decode_unshared_skips_validation_only_where_it_is_the_identity() -> None:
    """dict[str, Any] and list[Any] hand back the envelope's data; other types still validate."""
    body = decode_envelope(encode_envelope(DataBody({"id": 1, "tags": ["a"]}), max_bytes=1 << 20))
    assert isinstance(body, DataBody)
    plain = TypeAdapterCodec(dict[str, Any])
    assert plain.decode_unshared(body) is body.data
    assert plain.decode(body) == body.data
    assert plain.decode(body) is not body.data
    assert TypeAdapterCodec(list[Any]).decode_unshared(DataBody([1, "x"])) == [1, "x"]
    with pytest.raises(ValueError):
        TypeAdapterCodec(dict[str, Any]).decode_unshared(DataBody([1]))
    with pytest.raises(ValueError):
        TypeAdapterCodec(dict[str, int]).decode_unshared(DataBody({"a": "x"}))
    # A non-string key (not a JSON-mode dump) goes through validation, which fixes it.
    assert TypeAdapterCodec(dict[str, Any]).decode_unshared(DataBody({1: "a"})) == {"1": "a"}
