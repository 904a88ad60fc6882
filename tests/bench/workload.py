"""A seeded casino workload of core commands: a world (tree, players, funds), then play."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from ledger import commands as c

__all__ = ["World", "casino_play", "casino_workload", "casino_world"]


@dataclass
class World:
    """The setup commands and who plays where."""

    setup: list[c.Command] = field(default_factory=list)
    players: list[tuple[str, int]] = field(default_factory=list)  # (casino code, userCode)
    casinos: dict[str, str] = field(default_factory=dict)  # casino code -> operator code


def _rid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def casino_world(seed: int = 7, casinos: int = 40, players_per_casino: int = 50) -> World:
    """A broker, 4 operators, `casinos` transfer-mode casinos, each with funded players.
    userCodes are assigned from 1001 in the order the users are created here."""
    rng = random.Random(seed)
    world = World()
    add = world.setup.append
    add(c.CreateAgent(request_id=_rid(rng), agent_code="BROKER", currency="USD", mode="transfer"))
    add(c.IssuePoints(request_id=_rid(rng), agent_code="BROKER", amount="900000000"))
    operators = [f"OP{n}" for n in range(4)]
    for op in operators:
        add(
            c.CreateAgent(
                request_id=_rid(rng),
                agent_code=op,
                parent_code="BROKER",
                currency="USD",
                mode="transfer",
            )
        )
        add(
            c.TransferPoints(
                request_id=_rid(rng), agent_code="BROKER", to_agent_code=op, amount="200000000"
            )
        )
    user_code = 1001
    for n in range(casinos):
        code, op = f"CASINO{n}", operators[n % len(operators)]
        world.casinos[code] = op
        add(
            c.CreateAgent(
                request_id=_rid(rng),
                agent_code=code,
                parent_code=op,
                currency="USD",
                mode="transfer",
            )
        )
        add(
            c.TransferPoints(
                request_id=_rid(rng), agent_code=op, to_agent_code=code, amount="4000000"
            )
        )
        for p in range(players_per_casino):
            add(c.CreateUser(request_id=_rid(rng), agent_code=code, name=f"p{p}"))
            add(
                c.Deposit(request_id=_rid(rng), agent_code=code, user_code=user_code, amount="5000")
            )
            world.players.append((code, user_code))
            user_code += 1
    return world


def casino_play(
    world: World, commands_total: int, seed: int = 11, transfers: bool = False
) -> list[c.Command]:
    """Rounds of play: a bet, then a win (95%) or a refund (5%); with `transfers`, also
    small point transfers from an operator to its casino (commands of two partitions)."""
    rng = random.Random(seed)
    play: list[c.Command] = []
    round_no = 0
    while len(play) < commands_total:
        code, user = rng.choice(world.players)
        if transfers and rng.random() < 0.05:
            play.append(
                c.TransferPoints(
                    request_id=_rid(rng),
                    agent_code=world.casinos[code],
                    to_agent_code=code,
                    amount="1.00",
                )
            )
            continue
        round_no += 1
        txn, rnd = f"b{seed}-{round_no}", f"r{seed}-{round_no}"
        stake = f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}"
        play.append(
            c.Bet(
                request_id=_rid(rng),
                agent_code=code,
                user_code=user,
                txn_id=txn,
                round_id=rnd,
                amount=stake,
            )
        )
        if rng.random() < 0.05:
            play.append(c.Refund(request_id=_rid(rng), agent_code=code, user_code=user, txn_id=txn))
        else:
            payout = f"{rng.randint(0, 900)}.{rng.randint(0, 99):02d}"
            play.append(
                c.Win(
                    request_id=_rid(rng),
                    agent_code=code,
                    user_code=user,
                    txn_id=f"w{seed}-{round_no}",
                    round_id=rnd,
                    amount=payout,
                )
            )
    return play[:commands_total]


def casino_workload(
    commands_total: int, seed: int = 7, casinos: int = 40, players_per_casino: int = 50
) -> Iterator[c.Command]:
    """`commands_total` commands: the world's setup, then play."""
    world = casino_world(seed, casinos, players_per_casino)
    yield from world.setup[:commands_total]
    yield from casino_play(world, commands_total - len(world.setup), seed + 1)


def world_as_built(
    world: World, code_of: dict[tuple[str, int], int], deposits: list[c.Command]
) -> World:
    """The world as a ledger built it: userCodes come back in the order the ledger saw the
    createUser commands (Kafka's partitions may reorder them), `code_of` maps each
    planned (casino, userCode) to the real one, and `deposits` already use the real ones."""
    creations = [command for command in world.setup if isinstance(command, c.CreateUser)]
    in_ledger_order = sorted(
        zip(creations, world.players, strict=True), key=lambda pair: code_of[pair[1]]
    )
    others = [
        command for command in world.setup if not isinstance(command, c.CreateUser | c.Deposit)
    ]
    return World(
        setup=[*others, *(command for command, _ in in_ledger_order), *deposits],
        players=[(casino, code_of[(casino, user)]) for casino, user in world.players],
        casinos=world.casinos,
    )
