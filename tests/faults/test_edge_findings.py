"""Each finding of the fault suite, pinned by the smallest example that showed it.

Edge findings (consumers/) are fixed and asserted as fixed. Core findings (ledger/) are
reported, not fixed here: their tests are strict expected failures, so that a fix in the
core turns them into failures that ask for the marker to go.
"""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from consumers.app import (
    DLQ_RECORD_BYTES_MAX,
    _dead_letter,
    _encoded,
    _handle_one_by_one,
)
from consumers.decode import MESSAGE_BYTES_MAX, DeadLetter, decode
from ledger import commands as c
from ledger import handlers
from ledger.application import Ledger
from ledger.errors import Code
from ledger.results import Result
from ledger.settings import store_env
from tests.faults.dedicated import DedicatedServices
from tests.faults.hostile import HOSTILE_WORLD

# Not marked `faults`: these regression tests are deterministic and run in `make test`.


def _bet(**fields: Any) -> bytes:
    body = {
        "type": "bet",
        "requestId": str(uuid.uuid4()),
        "agentCode": "HC",
        "userCode": 1001,
        "txnId": "t1",
        "roundId": "r1",
        "amount": "1",
        **fields,
    }
    return json.dumps(body).encode()


def _record(key: bytes | None, value: bytes | None, headers: Any = ()) -> Any:
    return SimpleNamespace(
        topic="t", partition=0, offset=7, key=key, value=value, headers=list(headers)
    )


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (_bet(txnId=1.5), Code.VALIDATION_ERROR),  # a JSON number where text is wanted
        (_bet(agentCode=1e300), Code.VALIDATION_ERROR),
        (_bet(txnId="a\x00b"), Code.PARAMETERS_INVALID),  # NUL: no PostgreSQL text
        (_bet(agentCode="\ud800"), Code.PARAMETERS_INVALID),  # an unpaired surrogate
        (_bet(pad="x" * MESSAGE_BYTES_MAX), Code.PARAMETERS_INVALID),  # over 64 KiB
    ],
)
def test_the_edge_refuses_what_no_result_or_store_could_carry(value: bytes, code: Code) -> None:
    decoded = decode(value)
    assert isinstance(decoded, c.InvalidCommand)
    assert decoded.code == code
    assert len(decoded.agent_code) <= 200 and "\x00" not in decoded.agent_code
    decoded.agent_code.encode("utf-8")  # what the result echoes can be encoded


@pytest.mark.parametrize(
    "request_id",
    ["{%s}", "urn:uuid:%s", "%s\n", "\u0661%s"],
)
def test_a_request_id_that_is_not_a_canonical_uuid_is_not_usable(request_id: str) -> None:
    text = request_id % "6cf068b9-a0be-41e2-b162-b826f09a80d9"
    assert isinstance(decode(_bet(requestId=text)), DeadLetter)
    hexa = "6cf068b9a0be41e2b162b826f09a80d9"
    assert isinstance(decode(_bet(requestId=hexa)), DeadLetter)
    assert not isinstance(decode(_bet(requestId=str(uuid.uuid4()).upper())), DeadLetter)


def test_a_request_id_header_without_a_value_is_a_mismatch_not_a_crash() -> None:
    decoded = decode(_bet(), [("X-MGP-REQ-ID", None)])
    assert isinstance(decoded, c.InvalidCommand)
    assert decoded.code == Code.PARAMETERS_INVALID


def test_a_dead_letter_too_large_to_copy_is_cut_and_says_how_long_it_was() -> None:
    value = b"x" * (DLQ_RECORD_BYTES_MAX + 1)
    key, cut, headers = _dead_letter(_record(b"k", value, [("h", b"v")]), "value is not JSON")
    assert key == b"k" and cut == value[:MESSAGE_BYTES_MAX]
    assert dict(headers)["x-dlq-truncated"] == str(len(value)).encode()
    assert "h" not in dict(headers)
    small = _dead_letter(_record(b"k", b"junk", [("h", b"v")]), "value is not JSON")
    assert small == (b"k", b"junk", [("h", b"v"), *small[2][1:]])


def test_a_record_without_key_and_value_gets_a_dead_letter_aiokafka_can_send() -> None:
    key, value, _ = _dead_letter(_record(None, None), "value is not JSON")
    assert (key, value) == (b"", None)


def test_a_result_the_encoder_refuses_is_sent_escaped_not_retried_forever() -> None:
    result = Result(
        request_id=str(uuid.uuid4()),
        type="bet",
        agent_code="\ud800",
        code=Code.PARAMETERS_INVALID,
        message="bad",
    )
    assert json.loads(_encoded(result))["agentCode"] == "\\ud800"


def test_a_batch_in_which_every_command_fails_is_rewound_rather_than_answered_1001(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = Ledger()
    assert all(r.code == 0 for r in ledger.handle_batch(list(HOSTILE_WORLD)))

    def broken(uow: Any, command: c.Bet) -> Any:
        raise RuntimeError("every command fails: not one command's fault")

    monkeypatch.setitem(handlers.HANDLERS, c.Bet, broken)
    batch = [decode(_bet(txnId=f"t{n}")) for n in range(3)]
    with pytest.raises(RuntimeError):
        _handle_one_by_one(ledger, batch)  # type: ignore[arg-type]
    single = _handle_one_by_one(ledger, batch[:1])  # type: ignore[arg-type]
    assert [r.code for r in single] == [Code.INTERNAL_SERVER_ERROR]


# ------------------------------------------------------------------ core findings (fixed)


def test_the_core_refuses_an_agent_code_with_an_unpaired_surrogate_instead_of_raising() -> None:
    ledger = Ledger()
    bet = c.Bet(
        request_id=str(uuid.uuid4()),
        agent_code="\ud800",
        user_code=1001,
        txn_id="t",
        round_id="r",
        amount="1",
    )
    assert ledger.handle_batch([bet])[0].code == Code.PARAMETERS_INVALID


def test_a_commit_whose_acknowledgement_was_lost_does_not_wedge_later_batches(
    dedicated: DedicatedServices, fault_schema: str
) -> None:
    ledger = Ledger(store_env(dedicated.database_url, fault_schema, pool_size=1))
    try:
        assert all(r.code == 0 for r in ledger.handle_batch(list(HOSTILE_WORLD[:2])))
        real_insert = ledger.recorder.insert_events
        lost = {"once": True}

        def insert_then_lose_the_acknowledgement(events: Any, **kw: Any) -> Any:
            notification_ids = real_insert(events, **kw)  # the server committed ...
            if lost.pop("once", False):  # ... and the connection dropped before the reply
                raise OperationalError("server closed the connection unexpectedly")
            return notification_ids

        ledger.recorder.insert_events = insert_then_lose_the_acknowledgement  # type: ignore[method-assign]
        issue = c.IssuePoints(request_id=str(uuid.uuid4()), agent_code="HB", amount="1")
        with pytest.raises(OperationalError):
            ledger.handle_batch([issue])
        assert ledger.handle_batch([issue])[0].duplicate  # the retry finds it recorded
        again = c.IssuePoints(request_id=str(uuid.uuid4()), agent_code="HB", amount="1")
        assert ledger.handle_batch([again])[0].code == Code.OK
    finally:
        ledger.close()
