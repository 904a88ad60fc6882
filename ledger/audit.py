"""Verify the whole store from its events alone, in one pass and bounded memory.

`verify(recorder)` reads the notification log in pages and checks, for every event:
- its hash: recomputed over its canonical encoding and chained to the previous
  event of its stream (editing an event, or a gap or swap inside a stream, fails);
- its transaction's seal: every transaction ends with a BatchSealed counting and
  digesting exactly the events since the previous seal (a deleted, inserted or
  swapped event anywhere fails), chained per writer;
- its postings: balances are recomputed from the postings alone and every
  balance the event claims must equal the recomputation; agents' points and
  players' balances never go below zero; no balance passes the ceiling;
- its request: every primary event is claimed by the request record of its
  requestId, written in the same transaction (a command applied twice fails);
and at the end: the sum of all balances is zero per currency, no txnId was used
twice by one agent, and every anchor given (a seal kept outside the store, as the
ledger logs it) is in the store with its hash: the chains alone cannot show a tail of
whole transactions deleted, seals and all.

Memory holds one entry per stream head, per account and per open transaction,
never per event: a million events verify in the same memory as a thousand.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Notification, Transcoder

from ledger.bounds import BALANCE_MAX_MINOR
from ledger.chain import GENESIS_HASH, event_hash, seal_digest
from ledger.domain import request_key

__all__ = ["Anchor", "AuditReport", "Finding", "parse_anchor", "verify"]

PAGE_EVENTS = 5_000
FINDINGS_MAX = 100

Stream = UUID | str  # how the recorder types a stream id (always a UUID here)

_BOOK = "ledger.book:AgentBook."
_PRIMARY_NO_POSTINGS = (_BOOK + "AgentCreated", _BOOK + "UserRegistered")
_REQUEST = "ledger.domain:RequestHandled"
_SEAL = "ledger.chain:BatchSealed"
_ISSUANCE_CREATED = "ledger.domain:Issuance.Created"


@dataclass(frozen=True)
class Anchor:
    """A seal kept outside the store: writer (its seal stream), version and hash.

    The ledger logs its newest one (`Ledger.anchor`). The store's chains cannot show a
    tail of whole transactions deleted, seals and all; an anchor taken before the
    deletion can: its seal is gone, or has another hash.
    """

    writer: UUID
    version: int
    hash: str

    def __str__(self) -> str:
        return f"{self.writer}:{self.version}:{self.hash}"


def parse_anchor(text: str) -> Anchor:
    """`WRITER:VERSION:HASH`, as `Ledger.anchor` writes it; ValueError otherwise."""
    writer, version, hash_ = text.strip().split(":")
    if not version.isdigit() or int(version) < 1 or not re.fullmatch(r"[0-9a-f]{64}", hash_):
        raise ValueError(f"not an anchor (WRITER:VERSION:HASH): {text!r}")
    return Anchor(UUID(writer), int(version), hash_)


@dataclass(frozen=True)
class Finding:
    """Something that must not be: at `sequence` (the notification id), what is wrong."""

    sequence: int
    stream: str
    what: str


@dataclass
class AuditReport:
    events: int = 0
    seals: int = 0
    streams: int = 0
    accounts: int = 0
    commands: int = 0
    totals_by_currency: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    balances: dict[str, int] = field(default_factory=dict)
    # The notification id of the last event verified: `balances` are as of it.
    last_sequence: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings


def _non_negative(account: str) -> bool:
    return account.startswith(("agent:", "player:"))


class _Verifier:
    def __init__(self, transcoder: Transcoder, anchors: Sequence[Anchor] = ()) -> None:
        self.transcoder = transcoder
        self.report = AuditReport()
        self.anchors = {(a.writer, a.version): a for a in anchors}  # not met yet
        self.heads: dict[Stream, tuple[int, str]] = {}  # stream -> (version, hash)
        self.window: list[str] = []  # hashes since the last seal
        self.window_start = 1
        self.pending: dict[str, tuple[Stream, int, int]] = {}  # request -> (stream, version, seq)
        self.claimed: set[tuple[str, int]] = set()  # primary events claimed in this window
        self.balances: dict[str, int] = defaultdict(int)
        self.currency_of_agent: dict[str, str] = {}
        self.currency_of_stream: dict[Stream, str] = {}
        self.agent_of_stream: dict[Stream, str] = {}
        self.agent_of_player: dict[str, str] = {}
        self.txns: dict[str, set[str]] = defaultdict(set)

    def find(self, n: Notification, what: str) -> None:
        if len(self.report.findings) < FINDINGS_MAX:
            self.report.findings.append(Finding(n.id, str(n.originator_id), what))

    def event(self, n: Notification) -> None:
        self.report.events += 1
        self.report.last_sequence = n.id
        try:
            state: dict[str, Any] = self.transcoder.decode(n.state)
        except Exception:
            self.find(n, "the event's state cannot be decoded")
            return
        self.chain(n, state)
        if n.topic == _SEAL:
            self.seal(n, state)
            anchor = self.anchors.pop((cast(UUID, n.originator_id), n.originator_version), None)
            if anchor is not None and state.get("hash") != anchor.hash:
                self.find(n, f"the seal's hash is not the anchor's {anchor.hash}")
            return
        self.window.append(str(state.get("hash", "")))
        if n.topic == _REQUEST:
            self.request(n, state)
        elif n.topic.startswith(_BOOK):
            self.book(n, state)
        elif n.topic == _ISSUANCE_CREATED:
            self.currency_of_stream[n.originator_id] = state["currency"]
        elif "balances" in state:  # Issuance.Issued
            self.claims(n, state["balances"], self.currency_of_stream.get(n.originator_id))

    def chain(self, n: Notification, state: dict[str, Any]) -> None:
        head = self.heads.get(n.originator_id)
        if n.originator_version == 1:
            prev = GENESIS_HASH
        elif head is None or head[0] != n.originator_version - 1:
            self.find(
                n,
                f"version {n.originator_version} does not follow its stream's "
                f"version {None if head is None else head[0]}",
            )
            prev = "" if head is None else head[1]
        else:
            prev = head[1]
        timestamp = state.get("timestamp")
        try:
            expected = event_hash(
                prev,
                n.topic,
                cast(UUID, n.originator_id),
                n.originator_version,
                cast(datetime, timestamp),
                state,
            )
        except Exception:
            expected = ""
        if expected != state.get("hash"):
            self.find(n, "the hash does not match the event's content and its stream's chain")
        if n.topic != _REQUEST:  # request streams hold one event: no head to remember
            if n.originator_id not in self.heads:
                self.report.streams += 1
            self.heads[n.originator_id] = (n.originator_version, str(state.get("hash")))

    def seal(self, n: Notification, state: dict[str, Any]) -> None:
        self.report.seals += 1
        if state.get("events") != len(self.window) or state.get("digest") != seal_digest(
            self.window
        ):
            self.find(
                n,
                f"the seal does not match the {len(self.window)} events since "
                f"sequence {self.window_start}",
            )
        for request_id, (_, _, sequence) in self.pending.items():
            self.report.findings.append(
                Finding(
                    sequence, "", f"event of request {request_id} has no request record claiming it"
                )
            )
        self.pending.clear()
        self.claimed.clear()
        self.window = []
        self.window_start = n.id + 1

    def request(self, n: Notification, state: dict[str, Any]) -> None:
        self.report.commands += 1
        request_id, ref = state.get("request_id"), state.get("book_ref")
        claimed = self.pending.pop(request_key(str(request_id)), None)
        if ref is None:
            if claimed is not None:
                self.find(n, "a refused request has a money event")
            return
        target = (str(ref[0]), int(ref[1]))
        if claimed is not None and (cast(UUID, claimed[0]).hex, claimed[1]) == target:
            self.claimed.add(target)
            return
        # A repeat by content (same txnId, name or agent) of a command of the same
        # transaction points at that command's event and has none of its own.
        pending_refs = {
            (cast(UUID, stream).hex, version) for stream, version, _ in self.pending.values()
        }
        if claimed is not None or target not in self.claimed | pending_refs:
            self.find(n, f"the request record points at {ref}, not at the event of its request")

    def book(self, n: Notification, state: dict[str, Any]) -> None:
        if n.topic == _BOOK + "AgentCreated":
            self.agent_of_stream[n.originator_id] = state["code"]
            self.currency_of_agent[state["code"]] = state["currency"]
        agent = self.agent_of_stream.get(n.originator_id, "")
        if n.topic == _BOOK + "UserRegistered":
            self.agent_of_player[str(state["user_code"])] = agent
        if "txn_id" in state and n.topic.endswith(("BetPlaced", "WinPaid")):
            if state["txn_id"] in self.txns[agent]:
                self.find(n, f"txnId {state['txn_id']!r} used twice by agent {agent}")
            self.txns[agent].add(state["txn_id"])
        if "postings" in state or n.topic in _PRIMARY_NO_POSTINGS:
            self.primary(n, state)
        currency = self.currency_of_agent.get(agent)
        for debit, credit, amount in state.get("postings", ()):
            if not isinstance(amount, int) or amount < 0:
                self.find(n, f"posting amount {amount!r} is not a non-negative integer")
                continue
            self.balances[self.key(debit, currency)] -= amount
            self.balances[self.key(credit, currency)] += amount
        if "balances" in state:
            self.claims(n, state["balances"], currency)

    def primary(self, n: Notification, state: dict[str, Any]) -> None:
        request_id = request_key(str(state.get("request_id")))  # records use the key
        if request_id in self.pending:
            self.find(n, f"request {request_id} applied twice")
        self.pending[request_id] = (n.originator_id, n.originator_version, n.id)

    @staticmethod
    def key(account: str, currency: str | None) -> str:
        return f"issuance:{currency}" if account == "issuance" else account

    def claims(self, n: Notification, claimed: dict[str, int], currency: str | None) -> None:
        for account, balance in claimed.items():
            key = self.key(account, currency)
            if self.balances[key] != balance:
                self.find(
                    n, f"{account} claims {balance} but the postings give {self.balances[key]}"
                )
            if (_non_negative(account) and balance < 0) or abs(balance) > BALANCE_MAX_MINOR:
                self.find(n, f"{account} at {balance} breaks its bounds")

    def finish(self) -> AuditReport:
        for anchor in self.anchors.values():
            self.report.findings.append(
                Finding(
                    0,
                    str(anchor.writer),
                    f"the anchor's seal {anchor.version} is not in the store: "
                    "transactions up to it were deleted",
                )
            )
        if self.window:
            self.report.findings.append(
                Finding(self.window_start, "", f"{len(self.window)} events after the last seal")
            )
        totals: dict[str, int] = defaultdict(int)
        for account, balance in self.balances.items():
            totals[self.currency(account)] += balance
        for currency, total in totals.items():
            if total != 0:
                self.report.findings.append(Finding(0, "", f"{currency} sums to {total}, not 0"))
        self.report.totals_by_currency = dict(totals)
        self.report.accounts = len(self.balances)
        self.report.balances = dict(self.balances)
        return self.report

    def currency(self, account: str) -> str:
        kind, _, name = account.partition(":")
        if kind == "issuance":
            return name
        agent = self.agent_of_player.get(name, "") if kind == "player" else name
        return self.currency_of_agent.get(agent, "?")


def notifications(recorder: ApplicationRecorder, page: int = PAGE_EVENTS) -> Iterator[Notification]:
    """Every notification in log order, a page at a time."""
    start = 1
    while True:
        batch = recorder.select_notifications(start, page)
        if not batch:
            return
        yield from batch
        start = batch[-1].id + 1


def verify(
    recorder: ApplicationRecorder,
    transcoder: Transcoder,
    progress: Callable[[int], None] | None = None,
    anchors: Sequence[Anchor] = (),
) -> AuditReport:
    """Check the whole store; the report's findings name every event that is wrong, and
    every anchor whose seal is missing or differs."""
    verifier = _Verifier(transcoder, anchors)
    for n in notifications(recorder):
        verifier.event(n)
        if progress is not None and verifier.report.events % PAGE_EVENTS == 0:
            progress(verifier.report.events)
    return verifier.finish()


def digest_of(report: AuditReport) -> str:
    """A short fingerprint of the recomputed balances (for comparing two runs)."""
    text = ";".join(f"{k}={v}" for k, v in sorted(report.balances.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
