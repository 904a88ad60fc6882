"""The domain model: aggregates whose methods are commands and whose events are facts.

Aggregate boundaries (why they are cut this way is in the README):
- AgentBook, one stream per agent: the agent's points wallet `agent:<code>`, its
  house account `house:<code>`, its players `player:<userCode>`, their rounds
  and transactions. Every game and cashier command touches exactly one book,
  so one event records it, and optimistic concurrency on the book's version
  guards every balance that command read.
- UserDirectory, one stream: hands out ledger-unique integer userCodes and
  knows which agent each player belongs to.
- Issuance, one stream per currency: the `issuance` account, the source of points.
- RequestHandled, one single-event stream per requestId: the idempotency record,
  whose primary key makes a requestId impossible to apply twice, even from two
  processes.

A money event carries `postings` (debit account, credit account, amount_minor)
and `balances`: the balance after it of every account of the command. Only the
command's primary event carries the postings; the other streams it touched get
an event with their new balance, so an auditor sums each posting exactly once.
Guard checks raise `ledger.errors` before any event is triggered: a refused
command leaves every aggregate as it was.
"""

from __future__ import annotations

import functools
import re
from hashlib import sha1
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import orjson
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from ledger.bounds import BALANCE_MAX_MINOR, USER_CODE_FIRST
from ledger.chain import GENESIS_HASH, ChainedAggregate, event_hash
from ledger.errors import (
    BalanceLimitExceeded,
)

__all__ = [
    "ISSUANCE",
    "MODES",
    "WIN_KINDS",
    "Issuance",
    "RequestHandled",
    "SameAsOriginal",
    "UserDirectory",
    "agent_account",
    "event_id",
    "house_account",
    "name_uuid",
    "player_account",
    "request_key",
]

NAMESPACE = uuid5(NAMESPACE_URL, "urn:ledger")
ISSUANCE = "issuance"
MODES = ("transfer", "seamless")
WIN_KINDS = ("game", "bonus", "jackpot", "freespin", "promotion")
USER_NAME = re.compile(r"[A-Za-z0-9_]{2,50}")

# A posting moves `amount_minor` from the debit account to the credit account.
Posting = list[Any]  # [debit_account: str, credit_account: str, amount_minor: int]


_NAMESPACE_BYTES = NAMESPACE.bytes


def request_key(request_id: str) -> str:
    """The idempotency key of a requestId: its lower-case form. A requestId is a UUID, and
    "1A2B..." and "1a2b..." name the same one (RFC 4122: hex digits are case-insensitive on
    input), so a retry that spells it in another case is the same request. Results echo
    the requestId as the command spelled it; records and their streams use this key."""
    return request_id.lower()


def event_id(originator_id: UUID, originator_version: int) -> str:
    """The id of a recorded event: `str(uuid5(NAMESPACE, f"{stream}/{version}"))`.

    A command's primary event gives the result its `eventId`, and its history rows
    their `transId`. Computed here without building UUID objects: the projector
    names every money event it applies, and `uuid.uuid5` plus `str()` were a tenth
    of its time (tests/unit/test_event_id.py holds it equal to uuid5).
    """
    name = f"{_stream_text(originator_id)}/{originator_version}".encode()
    digest = bytearray(sha1(_NAMESPACE_BYTES + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID5_KEPT = ~(0xF000 << 64) & ~(0xC000 << 48)  # all but the version and variant bits
_UUID5_SET = (0x5000 << 64) | (0x8000 << 48)  # version 5, RFC 4122 variant


def name_uuid(name: str) -> UUID:
    """`uuid5(NAMESPACE, name)` for 1.4 µs instead of 2.5 (tests/unit/test_event_id.py): the
    standard library's UUID(bytes=..., version=5) checks and shifts in Python what is here
    one mask on the integer. Every new requestId names its record's stream this way."""
    digest = sha1(_NAMESPACE_BYTES + name.encode()).digest()
    return UUID(int=int.from_bytes(digest[:16], "big") & _UUID5_KEPT | _UUID5_SET)


@functools.lru_cache(maxsize=4096)
def _stream_text(stream_id: UUID) -> str:
    return str(stream_id)  # few streams carry primary events: the books of agents


def agent_account(code: str) -> str:
    return f"agent:{code}"


def house_account(code: str) -> str:
    return f"house:{code}"


def player_account(user_code: int) -> str:
    return f"player:{user_code}"


class SameAsOriginal(Exception):
    """Not an error: the command repeats an earlier one by content (txnId, name,
    agentCode), so its answer is that request's result, marked duplicate."""

    def __init__(self, request_id: str) -> None:
        super().__init__(request_id)
        self.request_id = request_id


def credited(balance_minor: int, amount_minor: int) -> int:
    """The balance after a credit; refused past the ceiling."""
    after = balance_minor + amount_minor
    if after > BALANCE_MAX_MINOR:
        raise BalanceLimitExceeded("the balance would exceed 922,337,203,685,477 minor units")
    return after


def debited(balance_minor: int, amount_minor: int, shortfall: type[Exception] | None) -> int:
    """The balance after a debit; `shortfall` is raised below zero (None: may go negative)."""
    after = balance_minor - amount_minor
    if shortfall is not None and after < 0:
        raise shortfall("the balance is not enough")
    if after < -BALANCE_MAX_MINOR:
        raise BalanceLimitExceeded("the balance would exceed 922,337,203,685,477 minor units")
    return after


class RequestHandled(DomainEvent):
    """The outcome of one requestId, accepted or refused; the only event of its stream.

    `book_ref` names the primary event ([book id hex, version]) of an accepted
    money command, from which the result's `sequence` is read back.
    """

    request_id: str
    fingerprint: str
    outcome: dict[str, Any]
    book_ref: list[Any] | None
    hash: str

    @staticmethod
    def stream_id(request_id: str) -> UUID:
        """The id of a requestId's stream. Not cached: a batch computes each once and
        hands it on, and a cache of them (20,000 UUIDs, turned over at the command rate)
        was the larger half of what the collector walked in the ledger process."""
        return name_uuid(f"request:{request_id}")

    @classmethod
    def stored(
        cls,
        request_id: str,
        fingerprint: str,
        outcome: dict[str, Any],
        book_ref: list[Any] | None,
        *,
        stream_id: UUID | None = None,
    ) -> tuple[StoredEvent, str]:
        """The stored event of a requestId's stream (version 1: there is never a second),
        and its hash.

        Written straight to its stored form: the same topic and the same bytes as
        eventsourcing's mapper makes of the event (tests/unit/test_stored_rows.py), without
        building the frozen event first. Every command writes one.
        """
        if stream_id is None:
            stream_id = cls.stream_id(request_id)
        timestamp = cls.create_timestamp()
        fields = {
            "request_id": request_id,
            "fingerprint": fingerprint,
            "outcome": outcome,
            "book_ref": book_ref,
        }
        hash_ = event_hash(GENESIS_HASH, _REQUEST_TOPIC, stream_id, 1, timestamp, fields)
        state = orjson.dumps({"timestamp": timestamp, **fields, "hash": hash_})
        return StoredEvent(stream_id, 1, _REQUEST_TOPIC, state), hash_


_REQUEST_TOPIC = get_topic(RequestHandled)


class UserDirectory(ChainedAggregate):
    """Ledger-unique userCodes and the agent each player belongs to."""

    STREAM_ID = uuid5(NAMESPACE, "users")

    @staticmethod
    def create_id() -> UUID:
        return UserDirectory.STREAM_ID

    def __init__(self) -> None:
        self.next_user_code = USER_CODE_FIRST
        self.agent_of: dict[str, str] = {}

    class UserCodeAssigned(ChainedAggregate.Event):
        request_id: str
        user_code: int
        agent_code: str

        def apply(self, aggregate: UserDirectory) -> None:
            aggregate.agent_of[str(self.user_code)] = self.agent_code
            aggregate.next_user_code = self.user_code + 1

    def assign(self, request_id: str, agent_code: str) -> int:
        user_code = self.next_user_code
        self.trigger_event(
            self.UserCodeAssigned, request_id=request_id, user_code=user_code, agent_code=agent_code
        )
        return user_code


class Issuance(ChainedAggregate):
    """The `issuance` account of one currency: minus every point ever issued in it."""

    @staticmethod
    def create_id(currency: str) -> UUID:
        return uuid5(NAMESPACE, f"issuance:{currency}")

    def __init__(self, currency: str) -> None:
        self.currency = currency
        self.balance_minor = 0

    class Issued(ChainedAggregate.Event):
        request_id: str
        agent_code: str
        balances: dict[str, int]

        def apply(self, aggregate: Issuance) -> None:
            aggregate.balance_minor = self.balances[ISSUANCE]
