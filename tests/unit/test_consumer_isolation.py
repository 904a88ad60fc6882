"""One command that trips a bug cannot stall its partition: it alone gets 1001."""

from __future__ import annotations

import pytest

from consumers.app import _handle_batch, _handle_one_by_one
from ledger import handlers
from ledger.application import Ledger
from ledger.commands import Bet
from ledger.errors import Code
from tests.builders import Desk, rid


def test_a_batch_that_keeps_failing_is_answered_one_command_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = Ledger()
    casino, user = Desk(ledger).casino()
    real_bet = handlers.HANDLERS[Bet]

    def bet_with_a_bug(uow: handlers.UnitOfWork, command: Bet) -> object:
        if command.txn_id == "boom":
            raise RuntimeError("a bug, not bad input")
        return real_bet(uow, command)

    monkeypatch.setitem(handlers.HANDLERS, Bet, bet_with_a_bug)
    batch = [
        Bet(
            request_id=rid(),
            agent_code=casino,
            user_code=user,
            txn_id=txn,
            round_id=txn,
            amount="1",
        )
        for txn in ("before", "boom", "after")
    ]
    with pytest.raises(RuntimeError):
        _handle_batch(ledger, batch)

    results = _handle_one_by_one(ledger, batch)

    assert [r.code for r in results] == [Code.OK, Code.INTERNAL_SERVER_ERROR, Code.OK]
    assert [r.duplicate for r in results] == [False, False, False]
    book = ledger.book(casino)
    assert book is not None and book.player_balance(user) == 100_00 - 2 * 100
    assert ledger.request(batch[1].request_id) is None  # not remembered: may be retried
