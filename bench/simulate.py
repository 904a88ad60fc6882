"""A seeded, realistic casino workload: the world's setup in dependency waves, then play.

Pure: no I/O and no clock. The same seed gives the same commands, requestIds included,
so a re-run against the same ledger is answered from its request log.

The world: one broker (a root agent) with `operators` operators under it, each with
`agents_per_operator` casino sites, alternately in transfer and seamless mode, each with
`players_per_agent` players. Setup comes in waves because a command may depend on an
agent written on another partition only once that agent's command was answered; the
last wave (deposits) also needs the userCodes that the ledger hands out.

Play (an endless iterator; the caller bounds it): players with Zipf-skewed activity play
rounds, each a bet then a game win or a refund, rounds of many players interleaved.
Mixed in: deposits, withdrawals, point transfers between parent and child, bonus wins,
bets that are overtaken by their refund (the late bet is refused
TRANSACTION_ROLLED_BACK), and about 1% repeats of a recent command with the same
requestId (a platform's retry; answered `duplicate: true`).
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from bench.bounds import OPEN_ROUNDS_MAX, RECENT_COMMANDS_MAX, WORLD_AGENTS_MAX, WORLD_PLAYERS_MAX
from ledger import commands as c

__all__ = [
    "CURRENCY",
    "Player",
    "Shape",
    "World",
    "build_world",
    "deposits",
    "play",
    "to_wire",
]

CURRENCY = "USD"
EXPONENT = 2  # USD has two minor-unit digits

# Funding, in minor units: generous enough that play never runs an agent dry.
BROKER_ISSUE_MINOR = 10**12
OPERATOR_POINTS_MINOR = 10**10
AGENT_POINTS_MINOR = 10**9
PLAYER_DEPOSIT_MINOR = 100_000  # 1,000.00

# Shares of play, per step (the rest are round actions: open or close a round).
DEPOSIT_SHARE = 0.015
WITHDRAW_SHARE = 0.010
TRANSFER_SHARE = 0.005
BONUS_SHARE = 0.005
REPEAT_SHARE = 0.01  # chance that a command is followed by a repeat of a recent one
OVERTAKEN_SHARE = 0.005  # of new rounds: the refund arrives before the bet
REFUND_SHARE = 0.07  # of closed rounds: refunded instead of won
LOSS_SHARE = 0.55  # of won rounds: the payout is zero
PAYOUT_MULTIPLIERS = (1.2, 1.5, 2.0, 2.0, 2.5, 3.4)  # ~95% return to player overall
STAKE_MINOR_MIN, STAKE_MINOR_SPREAD = 10, 500  # log-uniform 0.10 .. 50.00
ZIPF_EXPONENT = 1.1
GAME_CODES = ("slot-7", "slot-fruit", "baccarat", "roulette", "blackjack")
BONUS_KINDS = ("bonus", "jackpot", "freespin", "promotion")

_CAMEL = {
    "request_id": "requestId",
    "agent_code": "agentCode",
    "timestamp_ms": "timestampMs",
    "parent_code": "parentCode",
    "to_agent_code": "toAgentCode",
    "user_code": "userCode",
    "txn_id": "txnId",
    "round_id": "roundId",
    "game_code": "gameCode",
}


@dataclass(frozen=True, slots=True)
class Shape:
    """How big the world is."""

    operators: int = 2
    agents_per_operator: int = 4
    players_per_agent: int = 25

    def __post_init__(self) -> None:
        assert self.operators >= 1 and self.agents_per_operator >= 1
        assert self.players_per_agent >= 1
        assert self.operators * self.agents_per_operator <= WORLD_AGENTS_MAX
        assert self.agents * self.players_per_agent <= WORLD_PLAYERS_MAX

    @property
    def agents(self) -> int:
        return self.operators * self.agents_per_operator


@dataclass(frozen=True, slots=True)
class Player:
    """A player as planned: the ledger assigns its userCode at createUser."""

    agent_code: str
    name: str
    transfer: bool  # False: a seamless agent's player (the stake comes from agent points)


@dataclass(frozen=True, slots=True)
class World:
    """The tree and its setup waves (all but the deposits, which need userCodes)."""

    prefix: str
    broker: str
    parent_of: dict[str, str]  # operator or casino code -> parent code
    transfer_agents: frozenset[str]
    players: list[Player]
    waves: list[list[c.Command]] = field(default_factory=list)

    @property
    def casinos(self) -> list[str]:
        return [code for code, parent in self.parent_of.items() if parent != self.broker]


def _request_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _amount(minor: int) -> str:
    return f"{minor // 10**EXPONENT}.{minor % 10**EXPONENT:0{EXPONENT}d}"


def build_world(seed: int, shape: Shape | None = None, prefix: str | None = None) -> World:
    """The world of `seed`: agent codes start with `prefix` (default `S<seed>`)."""
    shape = shape or Shape()
    prefix = prefix or f"S{seed}"
    rng = random.Random(f"world-{seed}")
    broker = f"{prefix}BR"
    operators = [f"{prefix}OP{n}" for n in range(shape.operators)]
    parent_of = dict.fromkeys(operators, broker)
    transfer_agents: set[str] = set()
    for op in operators:
        for n in range(shape.agents_per_operator):
            parent_of[f"{op}A{n}"] = op
            if n % 2 == 0:
                transfer_agents.add(f"{op}A{n}")
    players = [
        Player(code, f"p{n}", code in transfer_agents)
        for code, parent in parent_of.items()
        if parent != broker
        for n in range(shape.players_per_agent)
    ]
    world = World(prefix, broker, parent_of, frozenset(transfer_agents), players)
    world.waves.extend(_setup_waves(world, rng))
    return world


def _setup_waves(world: World, rng: random.Random) -> list[list[c.Command]]:
    """Root, operators, then casinos and the operators' points, then the casinos'
    points and the players: each wave depends only on earlier ones."""

    casinos = world.casinos

    def agent(code: str, parent: str | None) -> c.CreateAgent:
        seamless = code in casinos and code not in world.transfer_agents
        return c.CreateAgent(
            request_id=_request_id(rng),
            agent_code=code,
            parent_code=parent,
            currency=CURRENCY,
            mode="seamless" if seamless else "transfer",
            name=f"{code} site",
        )

    def transfer(sender: str, receiver: str, minor: int) -> c.TransferPoints:
        return c.TransferPoints(
            request_id=_request_id(rng),
            agent_code=sender,
            to_agent_code=receiver,
            amount=_amount(minor),
        )

    operators = [code for code, parent in world.parent_of.items() if parent == world.broker]
    issue = c.IssuePoints(
        request_id=_request_id(rng), agent_code=world.broker, amount=_amount(BROKER_ISSUE_MINOR)
    )
    return [
        [agent(world.broker, None), issue],
        [agent(op, world.broker) for op in operators],
        [
            *(transfer(world.broker, op, OPERATOR_POINTS_MINOR) for op in operators),
            *(agent(code, world.parent_of[code]) for code in casinos),
        ],
        [
            *(transfer(world.parent_of[code], code, AGENT_POINTS_MINOR) for code in casinos),
            *(
                c.CreateUser(request_id=_request_id(rng), agent_code=p.agent_code, name=p.name)
                for p in world.players
            ),
        ],
    ]


def deposits(world: World, user_codes: Mapping[Player, int]) -> list[c.Command]:
    """The last setup wave: every transfer-mode player's first deposit."""
    rng = random.Random(f"deposits-{world.prefix}")
    return [
        c.Deposit(
            request_id=_request_id(rng),
            agent_code=p.agent_code,
            user_code=user_codes[p],
            amount=_amount(PLAYER_DEPOSIT_MINOR),
        )
        for p in world.players
        if p.transfer
    ]


def play(world: World, user_codes: Mapping[Player, int], seed: int) -> Iterator[c.Command]:
    """Endless play after the setup (bound it with itertools.islice). Assumes every
    transfer-mode player starts with its setup deposit."""
    return _Table(world, user_codes, seed).commands()


@dataclass(frozen=True, slots=True)
class _Round:
    player: Player
    round_id: str
    txn_id: str
    stake_minor: int


class _Table:
    """The state play needs to stay plausible: open rounds and transfer players'
    balances (exact: a player's commands are all on its agent's partition, in order)."""

    def __init__(self, world: World, user_codes: Mapping[Player, int], seed: int) -> None:
        self.world, self.user_codes = world, user_codes
        self.rng = random.Random(f"play-{seed}")
        self.players = list(world.players)
        self.rng.shuffle(self.players)  # who is most active is part of the seed
        weights = (1 / (rank + 1) ** ZIPF_EXPONENT for rank in range(len(self.players)))
        self.cum_weights = list(itertools.accumulate(weights))
        self.balance_minor = {p: PLAYER_DEPOSIT_MINOR for p in self.players if p.transfer}
        self.open_rounds: dict[str, _Round] = {}
        self.recent: deque[c.Command] = deque(maxlen=RECENT_COMMANDS_MAX)
        self.serial = 0

    def commands(self) -> Iterator[c.Command]:
        while True:
            for command in self._step():
                self.recent.append(command)
                yield command
                if self.rng.random() < REPEAT_SHARE:
                    yield self.rng.choice(self.recent)  # a retry: same requestId, same payload

    def _step(self) -> list[c.Command]:
        draw = self.rng.random()
        if draw < DEPOSIT_SHARE:
            return self._deposit(self._transfer_player())
        draw -= DEPOSIT_SHARE
        if draw < WITHDRAW_SHARE:
            return self._withdraw(self._transfer_player())
        draw -= WITHDRAW_SHARE
        if draw < TRANSFER_SHARE:
            return [self._point_transfer()]
        draw -= TRANSFER_SHARE
        if draw < BONUS_SHARE:
            return [self._bonus(self._player())]
        closing = len(self.open_rounds) >= OPEN_ROUNDS_MAX or self.rng.random() < 0.5
        return self._close_round() if self.open_rounds and closing else self._open_round()

    # ------------------------------------------------------------------ who and how much

    def _player(self) -> Player:
        return self.rng.choices(self.players, cum_weights=self.cum_weights)[0]

    def _transfer_player(self) -> Player:
        for _ in range(len(self.players)):  # about half of them are transfer-mode players
            player = self._player()
            if player.transfer:
                return player
        raise AssertionError("the world has no transfer-mode player")

    def _stake_minor(self) -> int:
        return int(STAKE_MINOR_MIN * STAKE_MINOR_SPREAD ** self.rng.random())

    def _next(self, kind: str) -> str:
        self.serial += 1
        return f"{self.world.prefix}-{kind}{self.serial}"

    # ------------------------------------------------------------------ commands

    def _deposit(self, player: Player, minor: int | None = None) -> list[c.Command]:
        minor = minor or self.rng.randint(100, 1000) * 10**EXPONENT
        self.balance_minor[player] += minor
        return [
            c.Deposit(
                request_id=_request_id(self.rng),
                agent_code=player.agent_code,
                user_code=self.user_codes[player],
                amount=_amount(minor),
            )
        ]

    def _withdraw(self, player: Player) -> list[c.Command]:
        balance = self.balance_minor[player]
        if balance < 2:
            return self._deposit(player)
        everything = self.rng.random() < 0.3
        minor = balance if everything else balance // 2
        self.balance_minor[player] -= minor
        return [
            c.Withdraw(
                request_id=_request_id(self.rng),
                agent_code=player.agent_code,
                user_code=self.user_codes[player],
                amount=None if everything else _amount(minor),
            )
        ]

    def _point_transfer(self) -> c.Command:
        casino = self.rng.choice(self.world.casinos)
        parent = self.world.parent_of[casino]
        downward = self.rng.random() < 0.7
        return c.TransferPoints(
            request_id=_request_id(self.rng),
            agent_code=parent if downward else casino,
            to_agent_code=casino if downward else parent,
            amount=_amount(self.rng.randint(100, 5000) * 10**EXPONENT),
        )

    def _bonus(self, player: Player) -> c.Command:
        minor = self.rng.randint(1, 50) * 10**EXPONENT
        if player.transfer:
            self.balance_minor[player] += minor
        return c.Win(
            request_id=_request_id(self.rng),
            agent_code=player.agent_code,
            user_code=self.user_codes[player],
            txn_id=self._next("x"),
            amount=_amount(minor),
            kind=self.rng.choice(BONUS_KINDS),
        )

    def _open_round(self) -> list[c.Command]:
        player, stake_minor = self._player(), self._stake_minor()
        before: list[c.Command] = []
        if player.transfer and self.balance_minor[player] < stake_minor:
            before = self._deposit(player, PLAYER_DEPOSIT_MINOR)
        rnd = _Round(player, self._next("r"), self._next("b"), stake_minor)
        bet = c.Bet(
            request_id=_request_id(self.rng),
            agent_code=player.agent_code,
            user_code=self.user_codes[player],
            txn_id=rnd.txn_id,
            round_id=rnd.round_id,
            amount=_amount(stake_minor),
            game_code=self.rng.choice(GAME_CODES),
        )
        if self.rng.random() < OVERTAKEN_SHARE:
            return [
                *before,
                self._refund(rnd),
                bet,
            ]  # the bet will be refused, the round never opens
        if player.transfer:
            self.balance_minor[player] -= stake_minor
        self.open_rounds[rnd.round_id] = rnd
        return [*before, bet]

    def _close_round(self) -> list[c.Command]:
        rnd = self.open_rounds.pop(self.rng.choice(list(self.open_rounds)))
        if self.rng.random() < REFUND_SHARE:
            if rnd.player.transfer:
                self.balance_minor[rnd.player] += rnd.stake_minor
            return [self._refund(rnd)]
        payout_minor = 0
        if self.rng.random() >= LOSS_SHARE:
            payout_minor = int(rnd.stake_minor * self.rng.choice(PAYOUT_MULTIPLIERS))
        if rnd.player.transfer:
            self.balance_minor[rnd.player] += payout_minor
        return [
            c.Win(
                request_id=_request_id(self.rng),
                agent_code=rnd.player.agent_code,
                user_code=self.user_codes[rnd.player],
                txn_id=self._next("w"),
                round_id=rnd.round_id,
                amount=_amount(payout_minor),
            )
        ]

    def _refund(self, rnd: _Round) -> c.Command:
        return c.Refund(
            request_id=_request_id(self.rng),
            agent_code=rnd.player.agent_code,
            user_code=self.user_codes[rnd.player],
            txn_id=rnd.txn_id,
        )


def to_wire(command: c.Command, timestamp_ms: int | None = None) -> dict[str, Any]:
    """The command as the JSON object a platform puts on `ledger.commands` (camelCase,
    nulls omitted); `timestamp_ms` overrides the command's own timestampMs."""
    body: dict[str, Any] = {"type": command.type_name}
    for f in fields(command):
        value = getattr(command, f.name)
        if value is not None:
            body[_CAMEL.get(f.name, f.name)] = value
    if timestamp_ms is not None:
        body["timestampMs"] = timestamp_ms
    return body
