"""Result messages of topic `ledger.results` (CONTRACT.md section 4)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ResultMessage"]


class ResultMessage(BaseModel):
    """Exactly one per consumed command; key = requestId. Nulls are omitted on the wire."""

    model_config = ConfigDict(extra="forbid")

    requestId: str
    type: str = Field(examples=["bet"])
    agentCode: str
    code: int = Field(description="0 or a contract error code", examples=[0])
    status: str = Field(examples=["OK"])
    message: str
    duplicate: bool = Field(description="True for an idempotent repeat")
    userCode: int | None = None
    txnId: str | None = None
    balance: str | None = Field(
        default=None, description="Player balance after (transfer mode)", examples=["87.50"]
    )
    agentBalance: str | None = Field(
        default=None, description="Agent points after", examples=["1000.00"]
    )
    eventId: str | None = None
    sequence: int | None = Field(default=None, description="Global position of the event")
    processedAtMs: int

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()
