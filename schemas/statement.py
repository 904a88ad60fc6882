"""The account statement `ledger statement --format json` writes (and its CSV columns).

Amounts are decimal strings with exactly the currency's exponent digits, nulls omitted,
like the API's bodies; the entries are the API's transaction items plus their `change`.
"""

from __future__ import annotations

from pydantic import Field

from schemas.api import BalanceData, TransactionItem, _Wire

__all__ = ["STATEMENT_CSV_COLUMNS", "StatementData", "StatementEntry", "StatementTotal"]


class StatementEntry(TransactionItem):
    change: str | None = Field(
        default=None,
        description="What the entry did to the account: balanceAfter - balanceBefore "
        "(0 for a player's play on an agent's points in transfer mode; absent when the "
        "account keeps no balance)",
        examples=["-12.50"],
    )


class StatementTotal(_Wire):
    transType: int = Field(description="Vendor number (see TransactionItem)", examples=[1])
    name: str = Field(
        description="bet, win, deposit, withdraw, refund, bonusWin, transferPoints, issuePoints",
        examples=["bet"],
    )
    count: int = Field(examples=[3])
    amount: str = Field(description="Sum of the entries' amounts", examples=["37.50"])
    change: str | None = Field(default=None, description="Sum of the entries' changes")


class StatementData(_Wire):
    account: str = Field(examples=["agent:CA"])
    currency: str = Field(examples=["USD"])
    start: str | None = Field(
        default=None, description="First point, inclusive, as given (absent: the beginning)"
    )
    end: str | None = Field(
        default=None, description="End point, exclusive, as given (absent: now)"
    )
    asOfSequence: int = Field(description="Every event up to this sequence was considered")
    opening: BalanceData = Field(description="The balance just before the first point")
    closing: BalanceData = Field(description="The balance just before the end point")
    entries: list[StatementEntry]
    totals: list[StatementTotal] = Field(description="By transType, in its numeric order")
    entriesChange: str | None = Field(default=None, description="Sum of every entry's change")
    reconciled: bool | None = Field(
        default=None,
        description="opening + entriesChange == closing (absent when the account keeps no balance)",
    )


# `--format csv`: one row per record; `record` is opening, entry, total or closing.
STATEMENT_CSV_COLUMNS = (
    "record",
    "sequence",
    "createdAtMs",
    "type",
    "transType",
    "name",
    "txnId",
    "roundId",
    "userCode",
    "count",
    "amount",
    "change",
    "balanceBefore",
    "balanceAfter",
    "transId",
)
