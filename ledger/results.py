"""Results: the ledger's answer to one command, in the core's units."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.errors import Code

__all__ = ["Result"]


@dataclass(slots=True, kw_only=True)
class Result:
    """One answer per command. Amounts are minor units of `currency`.

    `sequence` is the global position of the command's primary event; only
    accepted money commands and agent/user creations have one. An idempotent
    repeat carries the original's code, amounts and sequence with
    `duplicate=True`.

    A value object: the ledger fills in `event_id`, `sequence` and
    `processed_at_ms` of a new result while it handles the batch; nothing may
    change a result after `handle_batch` returned it.
    """

    request_id: str
    type: str
    agent_code: str
    code: int
    message: str
    duplicate: bool = False
    user_code: int | None = None
    txn_id: str | None = None
    currency: str | None = None
    balance_minor: int | None = None
    agent_balance_minor: int | None = None
    event_id: str | None = None
    sequence: int | None = None
    processed_at_ms: int = 0

    @property
    def status(self) -> str:
        return Code(self.code).name

    @property
    def ok(self) -> bool:
        return self.code == Code.OK

    def outcome(self) -> dict[str, Any]:
        """What the request record keeps: everything but per-delivery fields.

        The sequence of a new accepted command is not known before its
        transaction commits; the record then points at its primary event instead.
        """
        kept = {
            "type": self.type,
            "agent_code": self.agent_code,
            "code": self.code,
            "message": self.message,
            "user_code": self.user_code,
            "txn_id": self.txn_id,
            "currency": self.currency,
            "balance_minor": self.balance_minor,
            "agent_balance_minor": self.agent_balance_minor,
            "event_id": self.event_id,
            "sequence": self.sequence,
        }
        return {key: value for key, value in kept.items() if value is not None}
