"""What makes a retry the same request, from the wire in (README, "Decisions"): the
requestId in any case, enum values in any case, and for a refused message also another
`timestampMs`, another key order or other spacing. Messages go through the edge's
decoding, the core (in memory) and the result's encoding, as from Kafka."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from consumers.decode import REQUEST_ID_HEADER, decode, encode_result
from ledger.application import Ledger
from ledger.commands import Command
from ledger.errors import Code


def _send(ledger: Ledger, value: bytes, header: str | None = None) -> dict[str, Any]:
    headers = [] if header is None else [(REQUEST_ID_HEADER, header.encode())]
    command = decode(value, headers)
    assert isinstance(command, Command), command
    [result] = ledger.handle_batch([command])
    answer: dict[str, Any] = orjson.loads(encode_result(result))
    return answer


def _message(**fields: Any) -> bytes:
    return orjson.dumps({"requestId": str(uuid.uuid4()), **fields})


def _world(ledger: Ledger) -> int:
    """A broker BR with points, its casino CA (transfer mode) and a funded player."""
    for message in (
        _message(type="createAgent", agentCode="BR", currency="USD", mode="transfer"),
        _message(
            type="createAgent", agentCode="CA", parentCode="BR", currency="USD", mode="transfer"
        ),
        _message(type="issuePoints", agentCode="BR", amount="1000"),
        _message(type="transferPoints", agentCode="BR", toAgentCode="CA", amount="1000"),
    ):
        assert _send(ledger, message)["code"] == 0
    user = _send(ledger, _message(type="createUser", agentCode="CA", name="alice"))
    assert user["code"] == 0
    code: int = user["userCode"]
    deposit = _message(type="deposit", agentCode="CA", userCode=code, amount="100")
    assert _send(ledger, deposit)["code"] == 0
    return code


def test_a_refused_message_retried_with_another_timestamp_order_or_case_is_refused_alike() -> None:
    ledger = Ledger()
    user = _world(ledger)
    request_id = str(uuid.uuid4())
    ill_typed = {"requestId": request_id, "type": "bet", "agentCode": "CA", "userCode": str(user)}
    first = _send(ledger, orjson.dumps({**ill_typed, "timestampMs": 1}))
    assert (first["code"], first["duplicate"]) == (Code.VALIDATION_ERROR, False)

    retries = [
        orjson.dumps({**ill_typed, "timestampMs": 2}),
        orjson.dumps(dict(reversed(list(ill_typed.items())))),
        orjson.dumps(ill_typed, option=orjson.OPT_INDENT_2),
        orjson.dumps({**ill_typed, "requestId": request_id.upper()}),
    ]
    for retry in retries:
        again = _send(ledger, retry)
        assert (again["code"], again["message"], again["duplicate"]) == (
            Code.VALIDATION_ERROR,
            first["message"],
            True,
        ), retry
    assert again["requestId"] == request_id.upper()  # echoed as the retry spelled it

    other = _send(ledger, orjson.dumps({**ill_typed, "userCode": "1"}))
    assert other["code"] == Code.IDEMPOTENCY_CONFLICT


def test_enum_values_and_the_currency_in_another_case_are_the_same_payload() -> None:
    ledger = Ledger()
    user = _world(ledger)
    win = {"type": "win", "agentCode": "CA", "userCode": user, "txnId": "w1", "amount": "5"}
    request_id = str(uuid.uuid4())
    first = _send(ledger, orjson.dumps({**win, "requestId": request_id, "kind": "bonus"}))
    assert first["code"] == 0
    again = _send(ledger, orjson.dumps({**win, "requestId": request_id, "kind": "BONUS"}))
    assert (again["code"], again["duplicate"], again["balance"]) == (0, True, first["balance"])

    agent = {"type": "createAgent", "agentCode": "CB", "parentCode": "BR"}
    agent["requestId"] = str(uuid.uuid4())
    created = _send(ledger, orjson.dumps({**agent, "currency": "USD", "mode": "seamless"}))
    assert created["code"] == 0
    again = _send(ledger, orjson.dumps({**agent, "currency": "usd", "mode": "SEAMLESS"}))
    assert (again["code"], again["duplicate"]) == (0, True)
    conflict = _send(ledger, orjson.dumps({**agent, "currency": "USD", "mode": "transfer"}))
    assert conflict["code"] == Code.IDEMPOTENCY_CONFLICT


def test_the_request_id_header_must_equal_it_exactly_case_included() -> None:
    """The header checks the message (contract section 3: "must equal requestId"); only
    the request's identity ignores case."""
    ledger = Ledger()
    user = _world(ledger)
    deposit = {"type": "deposit", "agentCode": "CA", "userCode": user, "amount": "1"}
    request_id = str(uuid.uuid4())
    value = orjson.dumps({**deposit, "requestId": request_id})
    assert _send(ledger, value, header=request_id.upper())["code"] == Code.PARAMETERS_INVALID
    other = str(uuid.uuid4())
    value = orjson.dumps({**deposit, "requestId": other})
    assert _send(ledger, value, header=other)["code"] == 0


def test_a_header_naming_another_request_is_refused_every_time_and_remembered_nowhere() -> None:
    """CONTRACT.md section 3: a header that differs from the body's requestId is 1012. The
    message does not say which request it is, so it answers for neither id: not with the
    accepted request's original result, not with 3001, and its corrected retry is applied."""
    ledger = Ledger()
    user = _world(ledger)
    accepted_id = str(uuid.uuid4())
    bet = {"type": "bet", "agentCode": "CA", "userCode": user, "roundId": "r1", "amount": "5"}
    accepted = orjson.dumps({"requestId": accepted_id, "txnId": "t1", **bet})
    assert _send(ledger, accepted, accepted_id)["code"] == 0
    written = ledger.recorder.max_notification_id()

    fresh_id = str(uuid.uuid4())
    fresh = orjson.dumps({"requestId": fresh_id, "txnId": "t2", **bet})
    for value, header in (
        (accepted, str(uuid.uuid4())),  # an accepted request's body under another id
        (accepted, accepted_id.upper()),  # the header must match exactly, case included
        (fresh, accepted_id),  # a new body under an accepted request's id
        (fresh, ""),
        (fresh, fresh_id + " "),
        (fresh, fresh_id + " "),  # the same refusal again: still not a repeat
    ):
        refused = _send(ledger, value, header)
        assert (refused["code"], refused["status"], refused["duplicate"]) == (
            Code.PARAMETERS_INVALID,
            "PARAMETERS_INVALID",
            False,
        ), (value, header)
        assert "balance" not in refused and "eventId" not in refused
    assert ledger.recorder.max_notification_id() == written  # nothing stored, not even a seal
    assert ledger.request(fresh_id) is None

    corrected = _send(ledger, fresh, fresh_id)
    assert (corrected["code"], corrected["duplicate"], corrected["balance"]) == (0, False, "90.00")
    repeat = _send(ledger, accepted, accepted_id)
    assert (repeat["code"], repeat["duplicate"], repeat["balance"]) == (0, True, "95.00")


def test_a_header_mismatch_in_a_batch_leaves_the_commands_around_it_alone() -> None:
    ledger = Ledger()
    user = _world(ledger)
    request_id = str(uuid.uuid4())
    value = orjson.dumps(
        {
            "requestId": request_id,
            "type": "bet",
            "agentCode": "CA",
            "userCode": user,
            "txnId": "t1",
            "roundId": "r1",
            "amount": "5",
        }
    )
    batch = [
        decode(value, [(REQUEST_ID_HEADER, b"other")]),
        decode(value, [(REQUEST_ID_HEADER, request_id.encode())]),
        decode(value, [(REQUEST_ID_HEADER, b"other")]),
        decode(value, []),
    ]
    assert all(isinstance(command, Command) for command in batch)
    results = ledger.handle_batch([c for c in batch if isinstance(c, Command)])
    assert [(r.code, r.duplicate) for r in results] == [
        (Code.PARAMETERS_INVALID, False),
        (Code.OK, False),
        (Code.PARAMETERS_INVALID, False),
        (Code.OK, True),
    ]
    assert results[1].balance_minor == results[3].balance_minor == 95_00
