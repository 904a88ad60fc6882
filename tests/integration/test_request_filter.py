"""The requestIds a ledger process skips looking up (`ledger/seen.py`), on PostgreSQL.

A second instance over the same store stands for what the filter cannot see: requests
recorded by another writer, or before a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID

import psycopg
import pytest

from ledger import commands as c
from ledger.application import Ledger
from ledger.errors import Code
from ledger.results import Result
from tests.builders import Desk, rid


def _lookups(ledger: Ledger) -> list[int]:
    """How many request streams each store lookup of `ledger` asks for, from now on."""
    asked: list[int] = []
    first_events: Callable[[Sequence[UUID]], object] = ledger._queries.first_events

    def counted(stream_ids: Sequence[UUID]) -> object:
        asked.append(len(stream_ids))
        return first_events(stream_ids)

    ledger._queries.first_events = counted  # type: ignore[method-assign]
    return asked


def _appended_since(ledger: Ledger, last: int | None) -> int:
    """Events stored after notification id `last` (a refused insert leaves a gap)."""
    return len(ledger.recorder.select_notifications(start=(last or 0) + 1, limit=100))


def _deposit_recorded_by_another_instance(env: dict[str, str]) -> tuple[Result, int]:
    """A casino whose player holds 100.00, and a deposit of 10.00 recorded by another
    instance (closed since); returns the deposit's result and the player's userCode."""
    other = Ledger(env)
    desk = Desk(other)
    _, user = desk.casino(points="1000", player_funds="100")
    original = desk.send(_deposit(user, "10"))
    other.close()
    assert original.ok and original.balance_minor == 11_000
    return original, user


def _trusting_the_filter(env: dict[str, str], user: int) -> Ledger:
    """A new instance past its first batch, which looked every requestId up and found
    nothing it had not met: from here it skips the lookup of requestIds it has not met."""
    ledger = Ledger(env)
    assert ledger.handle_batch([_deposit(user)])[0].balance_minor == 11_100
    return ledger


def _deposit(user: int, amount: str = "1", request_id: str | None = None) -> c.Deposit:
    return c.Deposit(request_id=request_id or rid(), agent_code="CA", user_code=user, amount=amount)


def test_new_request_ids_are_looked_up_at_start_up_and_skipped_once_the_store_knew_none(
    pg_ledger_env: dict[str, str],
) -> None:
    writer = Ledger(pg_ledger_env)
    _, user = Desk(writer).casino(points="1000", player_funds="100")
    writer.close()
    ledger = Ledger(pg_ledger_env)
    asked = _lookups(ledger)
    assert all(r.ok for r in ledger.handle_batch([_deposit(user) for _ in range(5)]))
    assert all(r.ok for r in ledger.handle_batch([_deposit(user) for _ in range(7)]))
    assert all(r.ok for r in ledger.handle_batch([_deposit(user) for _ in range(3)]))
    # The first batch asked for all five; the next two asked for nothing.
    assert asked == [5]
    assert ledger.races_lost == 0
    ledger.close()


def test_a_request_recorded_by_another_instance_is_answered_from_its_record_after_one_rerun(
    pg_ledger_env: dict[str, str],
) -> None:
    original, user = _deposit_recorded_by_another_instance(pg_ledger_env)
    original_id = original.request_id
    ledger = _trusting_the_filter(pg_ledger_env, user)
    asked = _lookups(ledger)
    last = ledger.recorder.max_notification_id()
    results = ledger.handle_batch(
        [_deposit(user, "2"), _deposit(user, "10", original_id), _deposit(user, "3")]
    )

    assert [(r.code, r.duplicate) for r in results] == [(0, False), (0, True), (0, False)]
    assert (results[1].sequence, results[1].event_id) == (original.sequence, original.event_id)
    assert [r.balance_minor for r in results] == [11_300, 11_000, 11_600]
    # The filter skipped the lookup, the store refused the second record of the
    # requestId, and the batch ran again with every requestId looked up.
    assert ledger.races_lost == 1
    assert asked == [3]
    assert ledger.requests_unforeseen == 1
    book = ledger.book("CA")
    assert book is not None and book.player_balance(user) == 11_600
    # Two deposits and their records, one seal: the repeat appended nothing.
    assert _appended_since(ledger, last) == 5
    # The next batch still looks everything up (the rerun found a record the filter
    # did not know); it finds nothing new, so the one after skips the lookup again.
    assert ledger.handle_batch([_deposit(user)])[0].ok
    assert ledger.handle_batch([_deposit(user)])[0].ok
    assert asked == [3, 1]
    ledger.close()


def test_another_payload_under_a_request_id_recorded_elsewhere_is_idempotency_conflict(
    pg_ledger_env: dict[str, str],
) -> None:
    original, user = _deposit_recorded_by_another_instance(pg_ledger_env)
    ledger = _trusting_the_filter(pg_ledger_env, user)
    last = ledger.recorder.max_notification_id()
    results = ledger.handle_batch([_deposit(user, "20", original.request_id), _deposit(user, "5")])

    assert results[0].code == Code.IDEMPOTENCY_CONFLICT
    assert results[1].ok and results[1].balance_minor == 11_600
    assert ledger.races_lost == 1
    # One deposit, its record and the seal: the conflict appended nothing.
    assert _appended_since(ledger, last) == 3
    ledger.close()


def test_after_a_failed_write_the_next_batch_looks_every_request_id_up(
    pg_ledger_env: dict[str, str],
) -> None:
    """The write may have landed although its acknowledgement was lost: the filter
    cannot know, so the next batch asks the store."""
    _, user = _deposit_recorded_by_another_instance(pg_ledger_env)
    ledger = _trusting_the_filter(pg_ledger_env, user)
    asked = _lookups(ledger)
    insert = ledger.recorder.insert_events

    def lost(*args: object, **kwargs: object) -> object:
        ledger.recorder.insert_events = insert  # type: ignore[method-assign]
        raise psycopg.OperationalError("the connection was lost at commit")

    ledger.recorder.insert_events = lost  # type: ignore[method-assign]
    with pytest.raises(psycopg.OperationalError):
        ledger.handle_batch([_deposit(user), _deposit(user)])
    assert asked == []
    assert all(r.ok for r in ledger.handle_batch([_deposit(user) for _ in range(4)]))
    assert ledger.handle_batch([_deposit(user)])[0].ok
    assert asked == [4]
    ledger.close()
