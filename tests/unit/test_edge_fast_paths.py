"""The edge's fast paths give exactly what the slower code they replace gave.

- `consumers.partition` picks the partition aiokafka's DefaultPartitioner picks;
- `encode_result` (orjson) writes the bytes of the documented pydantic wire model;
- the header-less copies that FastStream parses are the records minus their headers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import string
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from aiokafka.structs import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.app import _parse_without_headers, _without_headers
from consumers.decode import encode_result, result_message
from consumers.partition import murmur2, partition_of
from ledger.errors import Code
from ledger.results import Result

RANDOM_KEYS = 20_000
KEY_BYTES_MAX = 100
PARTITIONS_MAX = 64


def test_murmur2_equals_aiokafkas_on_random_keys_of_every_length() -> None:
    rng = random.Random(20_240_611)
    for n in range(RANDOM_KEYS):
        key = rng.randbytes(n % (KEY_BYTES_MAX + 1))  # lengths 0..100, every remainder mod 4
        assert murmur2(key) == aiokafka_murmur2(key), key


def test_the_partition_is_the_one_aiokafkas_default_partitioner_picks() -> None:
    rng = random.Random(7)
    partitioner = DefaultPartitioner()
    for n in range(RANDOM_KEYS):
        key = rng.randbytes(rng.randrange(KEY_BYTES_MAX + 1))
        if n % 2:  # results are keyed by requestId, a canonical UUID
            key = str(random.Random(n).getrandbits(128)).encode()
        count = 1 + n % PARTITIONS_MAX
        all_partitions = list(set(range(count)))  # as aiokafka lists them
        expected = partitioner(key, all_partitions, all_partitions)
        assert partition_of(key, all_partitions) == expected


@given(st.binary(max_size=KEY_BYTES_MAX))
def test_murmur2_equals_aiokafkas_on_any_bytes(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


# ------------------------------------------------------------------ results

TEXT = st.text(max_size=40) | st.sampled_from(["", "OK", "bet", "\u00e9\u4e2d\U0001f600", "\x7f"])
OPTIONAL_INT = st.none() | st.integers(min_value=-(2**70), max_value=2**70)


@st.composite
def results(draw: st.DrawFn) -> Result:
    return Result(
        request_id=draw(TEXT),
        type=draw(TEXT),
        agent_code=draw(TEXT),
        code=draw(st.sampled_from(list(Code))),
        message=draw(TEXT),
        duplicate=draw(st.booleans()),
        user_code=draw(OPTIONAL_INT),
        txn_id=draw(st.none() | TEXT),
        currency=draw(st.sampled_from([None, "USD", "KRW", "BHD", "JPY", "usd"])),
        balance_minor=draw(OPTIONAL_INT),
        agent_balance_minor=draw(OPTIONAL_INT),
        event_id=draw(st.none() | TEXT),
        sequence=draw(OPTIONAL_INT),
        processed_at_ms=draw(st.integers(min_value=0, max_value=2**64)),
    )


def _model_bytes(result: Result) -> bytes | type[BaseException]:
    try:
        return result_message(result).to_json()
    except Exception as error:
        return type(error)


@settings(max_examples=3_000)
@given(results())
def test_encode_result_writes_the_bytes_of_the_pydantic_wire_model(result: Result) -> None:
    expected = _model_bytes(result)
    if isinstance(expected, bytes):
        assert encode_result(result) == expected
    else:  # text UTF-8 cannot carry: refused by both (consumers.app escapes it)
        with pytest.raises(Exception):  # noqa: B017
            encode_result(result)


@pytest.mark.parametrize("char", [chr(n) for n in range(0x20)] + ['"', "\\", "/", "\u2028"])
def test_encode_result_escapes_every_control_character_as_the_model_does(char: str) -> None:
    result = Result(
        request_id=char, type="bet", agent_code="A" + char, code=Code.OK, message=char * 2
    )
    assert encode_result(result) == result_message(result).to_json()


def test_an_unpaired_surrogate_is_refused_by_both_encoders() -> None:
    result = Result(request_id="r", type="bet", agent_code="\ud800", code=0, message="m")
    with pytest.raises(Exception):  # noqa: B017
        result_message(result).to_json()
    with pytest.raises(Exception):  # noqa: B017
        encode_result(result)


# ------------------------------------------------------------------ parsing


def _record(headers: Any, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    value = "".join(random.Random(offset).choices(string.ascii_letters, k=20)).encode()
    return ConsumerRecord("t", 3, offset, 17, 0, b"k", value, None, 1, len(value), headers)


@pytest.mark.parametrize(
    "headers",
    [[], (), [("X-MGP-REQ-ID", b"r")], [("x-note", b"\xff\xfe")], [("x-note", None)], None],
)
def test_a_header_less_copy_is_the_record_without_its_headers(headers: Any) -> None:
    record = _record(headers)
    bare = _without_headers(record)
    assert bare == dataclasses.replace(record, headers=[]) or (bare is record and not headers)
    assert record.headers is headers  # the handler still gets the headers as they came


def test_faststream_parses_a_batch_with_undecodable_headers_and_the_handler_gets_them() -> None:
    batch = tuple(
        _record(headers, offset)
        for offset, headers in enumerate([[("x", b"\xff")], [], [("reply_to", b"t")]])
    )

    async def original(records: tuple[Any, ...]) -> Any:
        assert all(not r.headers for r in records)
        assert [r.value for r in records] == [r.value for r in batch]
        return type("Message", (), {"raw_message": None})()

    message = asyncio.run(_parse_without_headers(batch, original))
    assert message.raw_message is batch
