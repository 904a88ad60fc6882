"""What the core keeps in memory stays out of the garbage collector's way.

A book keeps every txnId of its agent forever; were they containers the collector
tracks, every full collection would walk all of them (0.2-0.7 s pauses at 10^6
stored events, see `ledger/book.py::_txn`).
"""

from __future__ import annotations

import gc
import itertools

from ledger.application import Ledger
from ledger.book import AgentBook
from tests.bench.workload import casino_workload


def test_a_books_transactions_are_not_tracked_by_the_garbage_collector() -> None:
    ledger = Ledger()
    commands = iter(casino_workload(6_000, casinos=3, players_per_casino=5))
    for batch in iter(lambda: list(itertools.islice(commands, 500)), []):
        # A full collection untracks a dict holding nothing it tracks; a tracked value
        # added after it (a fresh tuple or list) would track the dict again.
        gc.collect()
        ledger.handle_batch(batch)
    books = [
        book
        for book in (ledger.book(code) for code in ("CASINO0", "CASINO1", "CASINO2"))
        if book is not None
    ]
    assert len(books) == 3
    assert sum(len(book.txns) for book in books) > 5_000  # bets and wins, each a record
    for book in books:
        assert isinstance(book, AgentBook)
        assert not gc.is_tracked(book.txns), book.code
        assert not gc.is_tracked(book.rounds), book.code
    # A refund reads its bet's record back.
    refunded = [
        record
        for book in books
        for raw in book.txns
        if (record := book.txn(raw)) is not None and record[-1] is not None
    ]
    assert refunded, "the workload refunds about 5% of its bets"
