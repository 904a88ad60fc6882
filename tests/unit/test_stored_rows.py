"""The write path encodes its events itself (ledger/store.py::stored_event and
RequestHandled.stored): what it stores must be exactly what eventsourcing's mapper makes
of the same events, so that every reader (the ledger's own reads, the projector, the
audit) decodes them as before."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest

from bench.simulate import build_world, play
from ledger import application
from ledger.application import Ledger
from ledger.audit import verify
from ledger.book import AgentBook
from ledger.commands import CreateAgent
from ledger.domain import RequestHandled
from ledger.store import stored_event
from tests.unit.test_simulate import planned_codes


@pytest.fixture(scope="module")
def written() -> Iterator[tuple[Ledger, list[Any], list[Any]]]:
    """A ledger in memory that played a seeded casino stream: every event it stored, and
    the domain events it encoded itself (all but the request records)."""
    ledger = Ledger()
    stored: list[Any] = []
    encoded: list[Any] = []
    insert = ledger.recorder.insert_events

    def recording(events: Any, **kwargs: Any) -> Any:
        stored.extend(events)
        return insert(events, **kwargs)

    def encoding(event: Any) -> Any:
        encoded.append(event)
        return stored_event(event)

    ledger.recorder.insert_events = recording  # type: ignore[method-assign,assignment]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(application, "stored_event", encoding)
        world = build_world(11)
        for wave in world.waves:
            assert all(r.code == 0 for r in ledger.handle_batch(wave))
        commands = list(itertools.islice(play(world, planned_codes(world), 11), 3_000))
        for start in range(0, len(commands), 250):
            ledger.handle_batch(commands[start : start + 250])
    yield ledger, stored, encoded
    ledger.close()


def test_every_event_is_stored_as_the_mapper_stores_it(
    written: tuple[Ledger, list[Any], list[Any]],
) -> None:
    ledger, stored, encoded = written
    kinds = Counter(type(event).__qualname__ for event in encoded)
    # The kinds the stream writes: book creations and postings, the directory, issuance
    # and the seals (the request records are the next test's).
    assert {
        "BatchSealed",
        "AgentBook.AgentCreated",
        "AgentBook.UserRegistered",
        "AgentBook.BetPlaced",
        "AgentBook.WinPaid",
        "UserDirectory.Created",
        "Issuance.Issued",
    } <= set(kinds), kinds
    for event in encoded:
        assert stored_event(event) == ledger.mapper.to_stored_event(event)
    assert len(stored) > len(encoded)  # the rest: one request record per new requestId


def test_every_request_record_is_stored_as_the_mapper_stores_the_event(
    written: tuple[Ledger, list[Any], list[Any]],
) -> None:
    ledger, stored, _ = written
    records = [s for s in stored if s.topic == "ledger.domain:RequestHandled"]
    assert len(records) > 3_000 * 0.9
    for record in records:
        fields = orjson.loads(record.state)
        fields["timestamp"] = datetime.fromisoformat(fields["timestamp"])
        make: Any = RequestHandled  # built the way the library builds events: in field order
        event = make(originator_id=record.originator_id, originator_version=1, **fields)
        assert ledger.mapper.to_stored_event(event) == record


def test_the_audit_verifies_every_hash_and_seal_of_what_was_written(
    written: tuple[Ledger, list[Any], list[Any]],
) -> None:
    ledger, stored, _ = written
    report = verify(ledger.recorder, ledger.mapper.transcoder)
    assert report.findings == []
    assert report.events == len(stored)


def test_a_request_record_decodes_to_the_event_with_its_fields_and_hash() -> None:
    ledger = Ledger()
    outcome = {"type": "bet", "agent_code": "A1", "code": 0, "message": "OK"}
    record, hash_ = RequestHandled.stored("0a1b", "f" * 64, outcome, ["ab" * 16, 7])
    event = ledger.mapper.to_domain_event(record)
    assert isinstance(event, RequestHandled)
    assert (event.request_id, event.fingerprint, event.outcome, event.book_ref) == (
        "0a1b",
        "f" * 64,
        outcome,
        ["ab" * 16, 7],
    )
    assert (event.originator_id, event.originator_version) == (RequestHandled.stream_id("0a1b"), 1)
    assert event.hash == hash_
    assert ledger.mapper.to_stored_event(event) == record


def test_a_store_with_a_compressor_is_refused_rather_than_written_unreadable() -> None:
    with pytest.raises(ValueError, match="neither a compressor nor a cipher"):
        Ledger({"COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor"})


def test_every_event_triggered_is_the_event_its_class_builds_from_the_same_values(
    written: tuple[Ledger, list[Any], list[Any]],
) -> None:
    _, _, encoded = written
    for event in encoded:
        built = type(event)(**vars(event))
        assert list(vars(event).items()) == list(vars(built).items())


def test_an_event_missing_a_field_is_refused_by_the_library_and_changes_nothing() -> None:
    ledger = Ledger()
    assert ledger.handle(
        CreateAgent(request_id="r-1", agent_code="AG", currency="USD", mode="transfer")
    ).ok
    book = ledger.book("AG")
    assert book is not None
    version, head = book.version, book.head_hash
    with pytest.raises(TypeError, match="Can't construct event"):
        book.trigger_event(AgentBook.BetPlaced, request_id="r-2", user_code=1001)
    assert (book.version, book.head_hash, book.pending_events) == (version, head, [])
