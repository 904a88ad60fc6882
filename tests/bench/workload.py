"""A seeded casino workload of core commands: a tree, players, then play."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

from ledger import commands as c

__all__ = ["casino_workload"]


def casino_workload(
    commands_total: int, seed: int = 7, casinos: int = 40, players_per_casino: int = 50
) -> Iterator[c.Command]:
    """Setup commands (agents, points, users, deposits) followed by rounds of play
    (bet, then win or refund) until `commands_total` commands were produced."""
    rng = random.Random(seed)
    rid = lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4))  # noqa: E731
    made = 0
    yield c.CreateAgent(request_id=rid(), agent_code="BROKER", currency="USD", mode="transfer")
    yield c.IssuePoints(request_id=rid(), agent_code="BROKER", amount="900000000")
    made += 2
    operators = [f"OP{n}" for n in range(4)]
    for op in operators:
        yield c.CreateAgent(
            request_id=rid(), agent_code=op, parent_code="BROKER", currency="USD", mode="transfer"
        )
        yield c.TransferPoints(
            request_id=rid(), agent_code="BROKER", to_agent_code=op, amount="200000000"
        )
        made += 2
    players: list[tuple[str, int]] = []
    user_code = 1001
    for n in range(casinos):
        code, op = f"CASINO{n}", operators[n % len(operators)]
        yield c.CreateAgent(
            request_id=rid(), agent_code=code, parent_code=op, currency="USD", mode="transfer"
        )
        yield c.TransferPoints(
            request_id=rid(), agent_code=op, to_agent_code=code, amount="4000000"
        )
        made += 2
        for p in range(players_per_casino):
            yield c.CreateUser(request_id=rid(), agent_code=code, name=f"p{p}")
            yield c.Deposit(request_id=rid(), agent_code=code, user_code=user_code, amount="5000")
            players.append((code, user_code))
            user_code += 1
            made += 2
    round_no = 0
    while made < commands_total:
        code, user = rng.choice(players)
        round_no += 1
        txn, rnd = f"b{round_no}", f"r{round_no}"
        stake = f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}"
        yield c.Bet(
            request_id=rid(),
            agent_code=code,
            user_code=user,
            txn_id=txn,
            round_id=rnd,
            amount=stake,
        )
        made += 1
        if made >= commands_total:
            break
        if rng.random() < 0.05:
            yield c.Refund(request_id=rid(), agent_code=code, user_code=user, txn_id=txn)
        else:
            payout = f"{rng.randint(0, 900)}.{rng.randint(0, 99):02d}"
            yield c.Win(
                request_id=rid(),
                agent_code=code,
                user_code=user,
                txn_id=f"w{round_no}",
                round_id=rnd,
                amount=payout,
            )
        made += 1
