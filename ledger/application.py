"""The ledger application: a batch of commands in, their results out, one transaction.

`Ledger.handle_batch` is the core's entry point. For a batch it
1. reads the request records of every requestId it does not remember and may have
   met (one query; `ledger/seen.py` says which can be skipped, and why that is safe),
2. brings every cached book the batch names up to date (one query), loads the others,
3. runs each command in order against the books in memory (later commands see the
   effects of earlier ones), collecting events in command order,
4. saves every event of the batch, request records included, in ONE store
   transaction, and only then updates its caches and answers.
A lost optimistic-concurrency race (another process wrote a stream first)
raises IntegrityError at step 4: the batch forgets everything it touched, reads
it again from the store, and runs again from step 1 on fresh state, so no update
is ever lost.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar, cast
from uuid import UUID, uuid4

import psycopg
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, StoredEvent, Transcoder
from eventsourcing.utils import Environment

from ledger.audit import Anchor
from ledger.book import AgentBook
from ledger.bounds import (
    BATCH_COMMANDS_MAX,
    BATCH_SAVE_ATTEMPTS_MAX,
    BOOKS_CACHED_MAX,
    REQUESTS_CACHED_MAX,
)
from ledger.chain import GENESIS_HASH, BatchSealed
from ledger.commands import Command, CreateAgent, InvalidCommand, TransferPoints
from ledger.domain import (
    Issuance,
    RequestHandled,
    SameAsOriginal,
    UserDirectory,
    event_id,
    request_key,
)
from ledger.errors import Code, LedgerError
from ledger.gc_pause import collector_paused
from ledger.handlers import AGENT_CODE, HANDLERS
from ledger.results import Result
from ledger.seen import RequestFilter
from ledger.store import OrjsonTranscoder, queries_for, stored_event

__all__ = ["Ledger", "RequestRecord"]

A = TypeVar("A", bound=Aggregate)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What the ledger remembers of a requestId: its payload fingerprint and answer."""

    fingerprint: str
    result: Result


class _LRU(OrderedDict[Any, Any]):
    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.maxsize:
            self.popitem(last=False)


class _Batch:
    """The unit of work of one batch: aggregates it touched and events in command order."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.touched: dict[UUID, Aggregate] = {}
        self.current: list[Aggregate] = []  # touched by the command being run
        self.events: list[Any] = []

    def _use(self, aggregate: A) -> A:
        self.touched[aggregate.id] = aggregate
        self.current.append(aggregate)
        return aggregate

    def _get(self, stream_id: UUID, cls: type[A]) -> A | None:
        # Aggregates created earlier in this batch are not in the store yet.
        touched = self.touched.get(stream_id)
        if touched is not None:
            assert isinstance(touched, cls)
            return self._use(touched)
        found = self.ledger.aggregate(stream_id, cls)
        return None if found is None else self._use(found)

    def book(self, code: str) -> AgentBook | None:
        return self._get(AgentBook.create_id(code), AgentBook)

    def add_book(self, book: AgentBook) -> None:
        self._use(book)

    def directory(self) -> UserDirectory:
        directory = self._get(UserDirectory.STREAM_ID, UserDirectory)
        return directory if directory is not None else self._use(UserDirectory())

    def issuance(self, currency: str) -> Issuance:
        issuance = self._get(Issuance.create_id(currency), Issuance)
        return issuance if issuance is not None else self._use(Issuance(currency))

    def discard(self) -> None:
        """Forget a refused command: an aggregate it created (a first issuance of a
        currency, the user directory) is dropped; an existing one must be untouched."""
        for aggregate in self.current:
            if aggregate.pending_events:
                assert aggregate.version == len(aggregate.pending_events), (
                    "a refused command must not trigger events on existing aggregates"
                )
                aggregate.collect_events()
                self.touched.pop(aggregate.id, None)
        self.current.clear()

    def collect(self) -> list[Any]:
        """Take the events the last command triggered, its primary event first."""
        new = [event for aggregate in self.current for event in aggregate.collect_events()]
        self.current.clear()
        new.sort(key=lambda event: not isinstance(event, PRIMARY_EVENTS))
        self.events.extend(new)
        return new


# The event that records a command: its postings, or the agent or user it created.
# The other streams a command touches (the receiving book of a transfer, the
# issuance account, the user directory) get secondary events.
PRIMARY_EVENTS = (AgentBook.Posted, AgentBook.AgentCreated, AgentBook.UserRegistered)


# pg_advisory_lock key of the store's set-up (any bigint; "ledger" in ASCII).
STORE_SETUP_LOCK_KEY = 0x6C6564676572


@contextmanager
def _store_setup_lock(env: Environment) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock while the store's tables are set up.

    eventsourcing creates its tables, types and functions at start-up (`CREATE ... IF
    NOT EXISTS`, `CREATE OR REPLACE FUNCTION`). Two processes doing it at the same time
    make PostgreSQL refuse one ("tuple concurrently updated"): two instances of the
    service started together would lose one of them. The lock makes them take turns.
    Nothing to do for the in-memory store.
    """
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        yield
        return
    with psycopg.connect(
        host=env.get("POSTGRES_HOST"),
        port=env.get("POSTGRES_PORT"),
        dbname=env.get("POSTGRES_DBNAME"),
        user=env.get("POSTGRES_USER"),
        password=env.get("POSTGRES_PASSWORD"),
        connect_timeout=int(env.get("POSTGRES_CONNECT_TIMEOUT") or 10),
        autocommit=True,
        application_name="ledger-setup",
    ) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (STORE_SETUP_LOCK_KEY,))
        yield  # closing the connection releases the lock


class Ledger(Application[UUID]):
    """The event-sourced ledger. Persistence comes from the environment
    (PERSISTENCE_MODULE, POSTGRES_*), in memory when none is set."""

    name = "ledger"

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()

    def __init__(self, env: dict[str, str] | None = None) -> None:
        with _store_setup_lock(self.construct_env(self.name, env)):
            super().__init__(env)
        if self.mapper.compressor is not None or self.mapper.cipher is not None:
            # The write path encodes its events itself (ledger/store.py::stored_event).
            raise ValueError("the ledger's store takes neither a compressor nor a cipher")
        self._aggregates: _LRU = _LRU(BOOKS_CACHED_MAX)
        self._requests: _LRU = _LRU(REQUESTS_CACHED_MAX)
        self._met = RequestFilter()  # every request stream id recorded or read here
        # Whether the next batch looks up every requestId it does not remember, the
        # filter notwithstanding: at start-up (the filter is empty, and a restart is
        # followed by redeliveries), after a rerun, and while those lookups keep
        # finding records the filter did not know (a replay of the topic).
        self._lookup_all = True
        self._queries = queries_for(self.recorder)
        # Batches rerun after the store refused their write: another writer got to a
        # stream first, or a requestId had been recorded where this process could not see it.
        self.races_lost = 0
        self.requests_unforeseen = 0  # records found that the filter did not know
        # This process's seal stream: one BatchSealed closes every transaction it writes.
        self.writer_id = uuid4()
        self.seal_version = 0
        self.seal_hash = GENESIS_HASH  # the newest seal: the anchor to publish

    def anchor(self) -> str | None:
        """This writer's newest seal as `WRITER:VERSION:HASH`, to keep outside the store
        (`ledger audit verify --anchor`); None before its first write."""
        if self.seal_version == 0:
            return None
        return str(Anchor(self.writer_id, self.seal_version, self.seal_hash))

    # ----------------------------------------------------------------- reads

    def aggregate(self, stream_id: UUID, cls: type[A]) -> A | None:
        """The aggregate from the cache, else from the store; None if it has no events."""
        cached = self._aggregates.get(stream_id)
        if cached is None:
            try:
                cached = self.repository.get(stream_id)
            except AggregateNotFoundError:
                return None
            self._aggregates.put(stream_id, cached)
        assert isinstance(cached, cls)
        return cached

    def clear_caches(self) -> None:
        """Forget every cached aggregate and request record: the next reads come from
        the store (e.g. to read what another process wrote)."""
        self._aggregates.clear()
        self._requests.clear()
        self._lookup_all = True

    def book(self, code: str) -> AgentBook | None:
        """An agent's book as this process knows it (for reads and tests)."""
        return self.aggregate(AgentBook.create_id(code), AgentBook)

    def request(self, request_id: str) -> RequestRecord | None:
        """The record of a requestId (fingerprint and first answer), from memory or the store."""
        key = request_key(request_id)
        return self._load_requests([key]).get(key)

    # ----------------------------------------------------------------- write

    def handle(self, command: Command) -> Result:
        return self.handle_batch([command])[0]

    def handle_batch(self, commands: Sequence[Command]) -> list[Result]:
        """Apply commands in order; one result each; all events in one transaction.

        Raises only for infrastructure failures (the store is down, or the
        concurrency race was lost BATCH_SAVE_ATTEMPTS_MAX times); then nothing
        of the batch was recorded and it may be retried whole.
        """
        assert len(commands) <= BATCH_COMMANDS_MAX, "the caller must bound its batches"
        with collector_paused():
            return self._handle_batch(commands)

    def _handle_batch(self, commands: Sequence[Command]) -> list[Result]:
        for _attempt in range(BATCH_SAVE_ATTEMPTS_MAX):
            batch = _Batch(self)
            try:
                return self._run(batch, commands)
            except IntegrityError:
                self.races_lost += 1
                self._forget(batch)
                self._reload(batch.touched)
            except BaseException:
                self._forget(batch)
                raise
        raise RuntimeError("the batch lost the optimistic-concurrency race too often")

    def _forget(self, batch: _Batch) -> None:
        """Drop every aggregate the failed batch touched (their memory is ahead of the
        store), look every requestId up again (the store refused one the filter had not
        met, or a commit whose acknowledgement was lost did land) and re-read this
        writer's newest seal: that commit's seal is the one the next must follow."""
        for stream_id in batch.touched:
            self._aggregates.pop(stream_id, None)
        self._lookup_all = True
        try:
            newest = self.recorder.select_events(self.writer_id, desc=True, limit=1)
        except Exception:  # the store is away; the next attempt re-reads it again
            return
        if newest:
            sealed = cast(BatchSealed, self.mapper.to_domain_event(newest[0]))
            self.seal_version, self.seal_hash = sealed.originator_version, sealed.hash

    def _reload(self, stream_ids: Iterable[UUID]) -> None:
        """Read again, before the rerun, the aggregates a batch that lost a race touched.

        Read lazily instead, while the rerun applied its commands, a book came back after
        the rerun's refresh, and reading it is reading all its events (1.9 s for a book
        of 78,549): another instance that wrote it meanwhile made the rerun lose again.
        Two instances at 1,000 commands/s: one batch of 6 commands lost 12 races in a
        row and took 10.5 s. Read first, the rerun's refresh brings them to the store's
        state just before the commands run, and the race window is a batch's again.
        """
        for stream_id in stream_ids:
            try:
                self._aggregates.put(stream_id, self.repository.get(stream_id))
            except AggregateNotFoundError:  # created by the failed batch: not stored
                continue

    def _run(self, batch: _Batch, commands: Sequence[Command]) -> list[Result]:
        keys = [request_key(c.request_id) for c in commands]
        stream_ids = [RequestHandled.stream_id(key) for key in keys]
        lookup_all, unforeseen = self._lookup_all, self.requests_unforeseen
        known = self._load_requests(keys, stream_ids, skip_unmet=not lookup_all)
        if lookup_all:  # back to trusting the filter once the store tells it nothing new
            self._lookup_all = self.requests_unforeseen > unforeseen
        self._refresh(commands)
        now_ms = int(time.time() * 1000)
        results: list[Result] = []
        records: dict[str, RequestRecord] = {}
        primaries: dict[str, Any] = {}  # event id -> primary event of this batch
        for command, key in zip(commands, keys, strict=True):
            if type(command) is InvalidCommand and not command.remembered:
                code = Code(command.code)
                results.append(_refused(command, code, command.message, processed_at_ms=now_ms))
                continue
            seen = records.get(key) or known.get(key)
            if seen is not None:
                results.append(self._repeat(command, seen, now_ms))
                continue
            result = self._apply(batch, command, records, primaries)
            result.processed_at_ms = now_ms
            records[key] = RequestRecord(command.fingerprint(), result)
            results.append(result)
        stream_of = dict(zip(keys, stream_ids, strict=True))
        return self._save(batch, results, records, primaries, stream_of)

    def _apply(
        self,
        batch: _Batch,
        command: Command,
        records: dict[str, RequestRecord],
        primaries: dict[str, Any],
    ) -> Result:
        """Run one new command and answer it; an accepted one gets its event id."""
        try:
            if isinstance(command, InvalidCommand):
                return _refused(command, Code(command.code), command.message)
            result = HANDLERS[type(command)](batch, command)
        except LedgerError as error:
            batch.discard()
            return _refused(command, error.code, error.message)
        except SameAsOriginal as repeat:
            batch.discard()
            original = records.get(request_key(repeat.request_id)) or self.request(
                repeat.request_id
            )
            assert original is not None, "the original of a repeat is always recorded"
            return replace(original.result, request_id=command.request_id, duplicate=True)
        events = batch.collect()
        if result.code == Code.OK and events:
            primary = events[0]
            assert isinstance(primary, PRIMARY_EVENTS), primary
            result.event_id = event_id(primary.originator_id, primary.originator_version)
            primaries[result.event_id] = primary
        return result

    @staticmethod
    def _repeat(command: Command, seen: RequestRecord, now_ms: int) -> Result:
        if seen.fingerprint != command.fingerprint():
            return _refused(
                command,
                Code.IDEMPOTENCY_CONFLICT,
                "this requestId was used before with another payload",
                processed_at_ms=now_ms,
            )
        return replace(
            seen.result, request_id=command.request_id, duplicate=True, processed_at_ms=now_ms
        )

    def _save(
        self,
        batch: _Batch,
        results: list[Result],
        records: dict[str, RequestRecord],
        primaries: dict[str, Any],
        stream_ids: dict[str, UUID],
    ) -> list[Result]:
        """Write the batch's events and request records in one transaction, then
        fill in the sequences and remember what was written. `stream_ids` are the
        request streams' ids `_run` computed, by request key."""
        stored = [stored_event(event) for event in batch.events]
        hashes = [event.hash for event in batch.events]
        for request_id, record in records.items():
            primary = primaries.get(record.result.event_id or "")
            book_ref = (
                None if primary is None else [primary.originator_id.hex, primary.originator_version]
            )
            request, request_hash = RequestHandled.stored(
                request_id,
                record.fingerprint,
                record.result.outcome(),
                book_ref,
                stream_id=stream_ids[request_id],
            )
            stored.append(request)
            hashes.append(request_hash)
        notification_ids: Sequence[int] = []
        if stored:  # a batch of repeats only writes nothing, not even a seal
            seal = BatchSealed.record(self.writer_id, self.seal_version + 1, self.seal_hash, hashes)
            notification_ids = self._insert([*stored, stored_event(seal)])
            self.seal_version, self.seal_hash = seal.originator_version, seal.hash
        position = {id(event): n for n, event in enumerate(batch.events)}
        sequences = {eid: notification_ids[position[id(e)]] for eid, e in primaries.items()}
        for index, result in enumerate(results):
            if result.sequence is None and result.event_id in sequences:
                if request_key(result.request_id) in records:  # new, owned by this batch
                    result.sequence = sequences[result.event_id]
                else:  # a repeat of a command earlier in this batch
                    results[index] = replace(result, sequence=sequences[result.event_id])
        for aggregate in batch.touched.values():
            self._aggregates.put(aggregate.id, aggregate)
        for request_id, record in records.items():
            self._requests.put(request_id, record)
            self._met.add(stream_ids[request_id])
        return results

    def _insert(self, stored: list[StoredEvent]) -> Sequence[int]:
        """Record a transaction's events; their notification ids (global sequence), in order.

        The recorder's own `insert_events` (its retries, its errors, its transaction),
        without the `Recording` and `Notification` objects `EventStore.put` makes of every
        event, which the ledger does not read.
        """
        notification_ids = self.recorder.insert_events(stored)
        assert notification_ids is not None and len(notification_ids) == len(stored)
        return notification_ids

    # --------------------------------------------------------------- helpers

    def _load_requests(
        self,
        request_ids: Sequence[str],
        stream_ids: Sequence[UUID] | None = None,
        *,
        skip_unmet: bool = False,
    ) -> dict[str, RequestRecord]:
        """Records of the given requestIds (their `request_key`s): cached ones, plus one
        store query for the rest, or, with `skip_unmet`, for those of the rest the filter
        may have met."""
        found: dict[str, RequestRecord] = {}
        missing: dict[UUID, str] = {}
        for n, request_id in enumerate(request_ids):
            record = self._requests.get(request_id)
            if record is not None:
                found[request_id] = record
            else:
                stream_id = (
                    RequestHandled.stream_id(request_id) if stream_ids is None else stream_ids[n]
                )
                if skip_unmet and stream_id not in self._met:
                    continue
                missing[stream_id] = request_id
        if not missing:
            return found
        stored = self._queries.first_events(list(missing))
        for stream_id in stored:
            if stream_id not in self._met:
                self.requests_unforeseen += 1
                self._met.add(stream_id)
        events = [cast(RequestHandled, self.mapper.to_domain_event(s)) for s in stored.values()]
        refs = {e.request_id: (UUID(e.book_ref[0]), e.book_ref[1]) for e in events if e.book_ref}
        sequences = self._queries.sequences(refs.values())
        for event in events:
            result = Result(request_id=event.request_id, **event.outcome)
            ref = refs.get(event.request_id)
            if ref is not None:
                result = replace(result, sequence=sequences[ref])
            record = RequestRecord(event.fingerprint, result)
            key = request_key(event.request_id)
            self._requests.put(key, record)
            found[key] = record
        return found

    def _refresh(self, commands: Sequence[Command]) -> None:
        """Bring the cached aggregates this batch will read up to the store's state.

        Another process may have written to them (a transfer from a parent on
        another partition, a rebalance); one query fetches what they missed.
        """
        stream_ids = {UserDirectory.STREAM_ID}
        for command in commands:
            codes = [command.agent_code]
            if isinstance(command, TransferPoints):
                codes.append(command.to_agent_code)
            elif isinstance(command, CreateAgent) and command.parent_code is not None:
                codes.append(command.parent_code)
            # An invalid code names no book (its handler refuses it); it may not even
            # be encodable as UTF-8 (an unpaired surrogate), so it is never hashed.
            stream_ids.update(
                AgentBook.create_id(code) for code in codes if AGENT_CODE.fullmatch(code)
            )
        versions = {}
        for stream_id in stream_ids:
            cached = self._aggregates.get(stream_id)
            if cached is not None:
                versions[stream_id] = cached.version
        for stored in self._queries.events_after(versions):
            aggregate = self._aggregates[stored.originator_id]
            event = cast(Aggregate.Event, self.mapper.to_domain_event(stored))
            event.mutate(aggregate)


def _refused(command: Command, code: Code, message: str, processed_at_ms: int = 0) -> Result:
    raw_type = command.raw_type if isinstance(command, InvalidCommand) else command.type_name
    return Result(
        request_id=command.request_id,
        type=_utf8(raw_type),
        agent_code=_utf8(command.agent_code),
        code=code,
        message=_utf8(message),
        processed_at_ms=processed_at_ms,
    )


def _utf8(text: str) -> str:
    """Text that can be stored and sent: a lone surrogate becomes '?'."""
    return text.encode("utf-8", "replace").decode("utf-8")
