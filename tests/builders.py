"""Terse builders for commands in tests: every call makes a fresh requestId unless given."""

from __future__ import annotations

import uuid
from typing import Any

from ledger import commands as c
from ledger.application import Ledger
from ledger.results import Result

__all__ = ["Desk", "rid"]


def rid() -> str:
    return str(uuid.uuid4())


class Desk:
    """A casino operator's desk: sends one command at a time to a ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def send(self, command: c.Command) -> Result:
        return self.ledger.handle(command)

    def create_agent(
        self,
        code: str,
        parent: str | None = None,
        currency: str = "USD",
        mode: str = "transfer",
        name: str | None = None,
        **kw: Any,
    ) -> Result:
        return self.send(
            c.CreateAgent(
                request_id=kw.pop("request_id", rid()),
                agent_code=code,
                parent_code=parent,
                currency=currency,
                mode=mode,
                name=name or code,
                **kw,
            )
        )

    def create_user(self, agent: str, name: str, **kw: Any) -> Result:
        return self.send(
            c.CreateUser(request_id=kw.pop("request_id", rid()), agent_code=agent, name=name, **kw)
        )

    def issue(self, agent: str, amount: str, **kw: Any) -> Result:
        return self.send(
            c.IssuePoints(
                request_id=kw.pop("request_id", rid()), agent_code=agent, amount=amount, **kw
            )
        )

    def transfer(self, agent: str, to: str, amount: str, **kw: Any) -> Result:
        return self.send(
            c.TransferPoints(
                request_id=kw.pop("request_id", rid()),
                agent_code=agent,
                to_agent_code=to,
                amount=amount,
                **kw,
            )
        )

    def deposit(self, agent: str, user: int, amount: str, **kw: Any) -> Result:
        return self.send(
            c.Deposit(
                request_id=kw.pop("request_id", rid()),
                agent_code=agent,
                user_code=user,
                amount=amount,
                **kw,
            )
        )

    def withdraw(self, agent: str, user: int, amount: str | None = None, **kw: Any) -> Result:
        return self.send(
            c.Withdraw(
                request_id=kw.pop("request_id", rid()),
                agent_code=agent,
                user_code=user,
                amount=amount,
                **kw,
            )
        )

    def bet(self, agent: str, user: int, txn: str, round_id: str, amount: str, **kw: Any) -> Result:
        return self.send(
            c.Bet(
                request_id=kw.pop("request_id", rid()),
                agent_code=agent,
                user_code=user,
                txn_id=txn,
                round_id=round_id,
                amount=amount,
                **kw,
            )
        )

    def win(
        self, agent: str, user: int, txn: str, round_id: str | None, amount: str, **kw: Any
    ) -> Result:
        return self.send(
            c.Win(
                request_id=kw.pop("request_id", rid()),
                agent_code=agent,
                user_code=user,
                txn_id=txn,
                round_id=round_id,
                amount=amount,
                **kw,
            )
        )

    def refund(
        self, agent: str, user: int, txn: str, amount: str | None = None, **kw: Any
    ) -> Result:
        return self.send(
            c.Refund(
                request_id=kw.pop("request_id", rid()),
                agent_code=agent,
                user_code=user,
                txn_id=txn,
                amount=amount,
                **kw,
            )
        )

    def casino(
        self,
        mode: str = "transfer",
        currency: str = "USD",
        points: str = "10000",
        player_funds: str | None = "100",
    ) -> tuple[str, int]:
        """A broker BR, an operator OP under it and a casino CA under that, with
        points flowing down and one player `alice` at CA (funded in transfer mode).
        Returns (casino code, user code)."""
        for code, parent in (("BR", None), ("OP", "BR"), ("CA", "OP")):
            assert self.create_agent(
                code, parent, currency=currency, mode=mode if code == "CA" else "transfer"
            ).ok
        assert self.issue("BR", points).ok
        assert self.transfer("BR", "OP", points).ok
        assert self.transfer("OP", "CA", points).ok
        user = self.create_user("CA", "alice")
        assert user.ok and user.user_code is not None
        if mode == "transfer" and player_funds is not None:
            assert self.deposit("CA", user.user_code, player_funds).ok
        return "CA", user.user_code
