"""Property tests: the ledger against an independent reference model of the contract.

Random command streams run against a small fixed world (two brokers in USD and
KRW, operators, casinos in transfer and seamless mode, a handful of players),
one command at a time or in random batches. Every result must equal the model's,
and after every step the books must balance: per currency, the sum of every
account (agents, houses, players, issuance) is zero, and no agent or player
is below zero or any account past the ceiling.

Profiles: HYPOTHESIS_PROFILE=ci (default, 1000 examples) or dev (200).
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application import Ledger
from ledger.audit import verify
from ledger.commands import (
    Bet,
    Command,
    CreateAgent,
    CreateUser,
    Deposit,
    IssuePoints,
    Refund,
    TransferPoints,
    Win,
    Withdraw,
)
from ledger.domain import Issuance
from ledger.errors import Code
from ledger.results import Result
from tests.unit.reference_model import (
    BALANCE_MAX_MINOR,
    CURRENCY_EXPONENTS,
    ModelResult,
    ReferenceModel,
)

settings.register_profile(
    "ci",
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# Applied to these tests only, so that loading this module changes no other test's settings.
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

MAX = BALANCE_MAX_MINOR

# ------------------------------------------------------------------- the world

# (code, parent, currency, mode)
WORLD: tuple[tuple[str, str | None, str, str], ...] = (
    ("BUSD", None, "USD", "transfer"),
    ("OPU", "BUSD", "USD", "transfer"),
    ("CAT", "OPU", "USD", "transfer"),
    ("CAS", "OPU", "USD", "seamless"),
    ("BKRW", None, "KRW", "transfer"),
    ("OPK", "BKRW", "KRW", "transfer"),
    ("CKT", "OPK", "KRW", "transfer"),
    ("CKS", "OPK", "KRW", "seamless"),
)
# (agent, name): userCodes 1001.. in this order when the prelude creates them.
PLAYERS = (
    ("CAT", "alice"),
    ("CAT", "bob"),
    ("CAS", "carol"),
    ("CKT", "dave"),
    ("CKS", "erin"),
    ("OPU", "frank"),
)
# Each player's agent and userCode (the prelude's users): most player commands use one.
PLAYER_SEATS = tuple((agent, 1001 + n) for n, (agent, _) in enumerate(PLAYERS))
PLAYER_KINDS = ("deposit", "withdraw", "bet", "win", "refund")
# Agents the stream may create, besides re-sending the world's definitions.
NEW_AGENT_CODES = ("N1", "N2")
VALID_AGENT_CODES = tuple(code for code, *_ in WORLD) + NEW_AGENT_CODES
# Money commands mostly name casinos; unknown and malformed codes too.
CASINOS = ("CAT", "CAS", "CKT", "CKS")
COMMAND_AGENTS = (*CASINOS, "CAT", "CAS", "OPU", "BUSD", "BKRW", "N1", "NOPE", "x", "bad code")
CURRENCY_OF = {code: currency for code, _, currency, _ in WORLD}
USER_CODES = (*range(1001, 1011), 424242, -1, 10**30)
TXN_IDS = ("t1", "t2", "t3", "t4", "t5")
ROUND_IDS = ("r1", "r2", "r3")
# Every kind in some spelling (matched case-insensitively), mostly game, and one unknown.
WIN_KIND_SPELLINGS = ("game",) * 3 + (
    "GAME",
    "Bonus",
    "jackpot",
    "freespin",
    "promotion",
    "lottery",
)
USER_NAMES = ("alice", "bob", "zed", "carol", "Y_2", "a", "bad name", "\u00fcber")

HOSTILE_AMOUNTS = (
    "",
    "-1",
    "-0",
    "+5",
    " 5",
    "5 ",
    "1e3",
    "1E2",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "1.234",
    "1.2345",
    "12.5",
    "0.001",
    ".5",
    "5.",
    "1,000",
    "0x10",
    "\uff11\uff12",
    "0",
    "0.0",
    "00",
    "1" * 25,
    "9" * 25,
    "1" * 35,
    "1" + "0" * 39,
    "1" + "0" * 40,
    "1.0000000000000000000000000000001",
)


def fmt(amount_minor: int, exponent: int) -> str:
    """Plain decimal text with exactly `exponent` fractional digits."""
    if exponent == 0:
        return str(amount_minor)
    whole, fraction = divmod(amount_minor, 10**exponent)
    return f"{whole}.{fraction:0{exponent}d}"


def amounts(currency: str) -> st.SearchStrategy[str]:
    exponent = CURRENCY_EXPONENTS[currency]
    common = st.sampled_from(("1", "5", "10", "12.5", "12.50", "100", "1000", "0.01"))
    minor = st.integers(0, 200_000).map(lambda m: fmt(m, exponent))
    trimmed = minor.map(lambda text: text.rstrip("0").rstrip(".") if "." in text else text)
    near_max = st.sampled_from((MAX, MAX - 1, MAX + 1, MAX // 2, MAX // 2 + 1, MAX // 3, 1))
    return st.one_of(
        common,
        common,
        minor,
        trimmed,
        near_max.map(lambda m: fmt(m, exponent)),
        st.sampled_from(HOSTILE_AMOUNTS),
    )


def respellings(text: str) -> list[str]:
    """Other spellings of an amount: some of equal value, some of a value barely different."""
    spelled = [
        "0" + text,
        text + ("0" if "." in text else ".0"),
        "+" + text,
        text + "e0",
        text + ("" if "." in text else ".") + "0" * 28 + "1",
        text + "1",
        "7",
    ]
    return [other for other in spelled if other != text]


def rid(number: int) -> str:
    return f"{number:08x}-0000-4000-8000-000000000000"


def prelude(with_users: bool, funding: str) -> list[Command]:
    """The world's setup, itself checked against the model like every other command."""
    made: list[Command] = [
        CreateAgent(
            request_id=rid(n),
            agent_code=code,
            parent_code=parent,
            currency=currency,
            mode=mode,
            name=code,
        )
        for n, (code, parent, currency, mode) in enumerate(WORLD)
    ]

    def add(cls: Callable[..., Command], **fields: Any) -> None:
        made.append(cls(request_id=rid(len(made)), **fields))

    if with_users:
        for agent, name in PLAYERS:
            add(CreateUser, agent_code=agent, name=name)
    if funding != "none":
        for root, operator, casinos, currency in (
            ("BUSD", "OPU", ("CAT", "CAS"), "USD"),
            ("BKRW", "OPK", ("CKT", "CKS"), "KRW"),
        ):
            exponent = CURRENCY_EXPONENTS[currency]
            total = MAX if funding == "rich" else 1_000_000 * 10**exponent
            add(IssuePoints, agent_code=root, amount=fmt(total, exponent))
            add(
                TransferPoints,
                agent_code=root,
                to_agent_code=operator,
                amount=fmt(total // 2, exponent),
            )
            for casino in casinos:
                add(
                    TransferPoints,
                    agent_code=operator,
                    to_agent_code=casino,
                    amount=fmt(total // 5, exponent),
                )
        if with_users:
            for user_code, agent in ((1001, "CAT"), (1002, "CAT"), (1004, "CKT")):
                exponent = CURRENCY_EXPONENTS[CURRENCY_OF[agent]]
                total = MAX if funding == "rich" else 1_000_000 * 10**exponent
                add(
                    Deposit,
                    agent_code=agent,
                    user_code=user_code,
                    amount=fmt(total // 20, exponent),
                )
    return made


# ------------------------------------------------------------ command streams

KINDS = (
    ("deposit",) * 3
    + ("withdraw",) * 2
    + ("bet",) * 5
    + ("win",) * 5
    + ("refund",) * 3
    + ("transfer", "transfer", "issue", "issue", "createUser", "createUser", "createAgent")
)


def fresh_command(draw: st.DrawFn, request_id: str, history: Sequence[Command]) -> Command:
    kind = draw(st.sampled_from(KINDS))
    timestamp_ms = draw(st.sampled_from((None, 1_700_000_000_000, 10**30)))
    common: dict[str, Any] = {"request_id": request_id, "timestamp_ms": timestamp_ms}
    if kind == "createAgent":
        return fresh_create_agent(draw, common)
    agent, user_code = (
        draw(st.sampled_from(PLAYER_SEATS))
        if kind in PLAYER_KINDS and draw(st.integers(0, 3))
        else (draw(st.sampled_from(COMMAND_AGENTS)), draw(st.sampled_from(USER_CODES)))
    )
    common["agent_code"] = agent
    amount = amounts(CURRENCY_OF.get(agent, "USD"))
    if kind == "createUser":
        return CreateUser(**common, name=draw(st.sampled_from(USER_NAMES)))
    if kind == "issue":
        return IssuePoints(**common, amount=draw(amount))
    if kind == "transfer":
        to = draw(st.sampled_from((*VALID_AGENT_CODES, "NOPE")))
        return TransferPoints(**common, to_agent_code=to, amount=draw(amount))
    common["user_code"] = user_code
    if kind == "deposit":
        return Deposit(**common, amount=draw(amount))
    if kind == "withdraw":
        return Withdraw(**common, amount=draw(st.none() | amount))
    txn_id = draw(st.sampled_from(TXN_IDS))
    if kind == "bet":
        return Bet(
            **common,
            txn_id=txn_id,
            round_id=draw(st.sampled_from(ROUND_IDS)),
            amount=draw(amount),
            game_code=draw(st.sampled_from((None, "g1"))),
        )
    if kind == "win":
        return Win(
            **common,
            txn_id=txn_id,
            round_id=draw(st.sampled_from((*ROUND_IDS, None))),
            amount=draw(amount),
            completed=draw(st.booleans()),
            kind=draw(st.sampled_from(WIN_KIND_SPELLINGS)),
        )
    bets = [
        c.amount
        for c in history
        if isinstance(c, Bet) and (c.agent_code, c.txn_id) == (agent, txn_id)
    ]
    refund_amount = draw(st.sampled_from((None, "bet", "other")))
    if refund_amount == "bet" and bets:
        refund_amount = draw(st.sampled_from(bets))
    elif refund_amount is not None:
        refund_amount = draw(amount)
    return Refund(**common, txn_id=txn_id, amount=refund_amount)


def fresh_create_agent(draw: st.DrawFn, common: dict[str, Any]) -> CreateAgent:
    if draw(st.booleans()):  # the world's own definition again, or a clash with it
        code, parent, currency, mode = draw(st.sampled_from(WORLD))
        return CreateAgent(
            **common,
            agent_code=code,
            parent_code=parent,
            currency=draw(st.sampled_from((currency, currency.lower(), "KRW"))),
            mode=draw(st.sampled_from((mode, mode.upper(), "seamless"))),
            name=draw(st.sampled_from((code, None))),
        )
    return CreateAgent(
        **common,
        agent_code=draw(st.sampled_from((*NEW_AGENT_CODES, "x", "bad code"))),
        parent_code=draw(st.sampled_from((None, None, "BUSD", "OPU", "CKT", "N1", "NOPE", "x"))),
        currency=draw(st.sampled_from(("USD", "usd", "KRW", "BHD", "ABC", ""))),
        mode=draw(st.sampled_from(("transfer", "Seamless", "hybrid"))),
        name=draw(st.sampled_from((None, "New agent", "", "n" * 201))),
    )


def follow_up(draw: st.DrawFn, request_id: str, bet: Bet) -> Command:
    """A command about an earlier bet: its refund, a win or another bet in its round."""
    common: dict[str, Any] = {
        "request_id": request_id,
        "agent_code": bet.agent_code,
        "user_code": bet.user_code,
    }
    kind = draw(st.sampled_from(("refund", "win", "bet")))
    if kind == "refund":
        return Refund(
            **common, txn_id=bet.txn_id, amount=draw(st.sampled_from((None, bet.amount, "3")))
        )
    txn_id = draw(st.sampled_from(TXN_IDS))
    amount = draw(amounts(CURRENCY_OF.get(bet.agent_code, "USD")))
    if kind == "bet":
        return Bet(**common, txn_id=txn_id, round_id=bet.round_id, amount=amount)
    return Win(
        **common,
        txn_id=txn_id,
        round_id=bet.round_id,
        amount=amount,
        completed=draw(st.booleans()),
        kind=draw(st.sampled_from(("game", "game", "bonus"))),
    )


def altered(draw: st.DrawFn, command: Command) -> Command:
    """The same requestId with another payload, or with an amount spelled differently."""
    amount = getattr(command, "amount", None)
    choices = ["timestamp"]
    if isinstance(amount, str):
        choices += ["amount", "amount"]
    if hasattr(command, "user_code"):
        choices.append("user")
    if hasattr(command, "name"):
        choices.append("name")
    if isinstance(command, Win):
        choices.append("completed")
    choice = draw(st.sampled_from(choices))
    if choice == "timestamp":  # not part of the payload: a plain retry
        return dataclasses.replace(command, timestamp_ms=1_800_000_000_000)
    if choice == "amount":
        assert isinstance(amount, str)
        return dataclasses.replace(command, amount=draw(st.sampled_from(respellings(amount))))
    if choice == "user":
        return dataclasses.replace(command, user_code=draw(st.sampled_from(USER_CODES)))
    if choice == "name":
        return dataclasses.replace(command, name=draw(st.sampled_from(USER_NAMES)))
    assert isinstance(command, Win)
    return dataclasses.replace(command, completed=not command.completed)


@st.composite
def scenarios(draw: st.DrawFn, conflicts: bool = True) -> tuple[list[Command], list[Command]]:
    """(prelude, stream): the world's setup and 1..40 random commands after it.

    A stream command is new, or an exact retry of an earlier requestId, or (when
    `conflicts`) an earlier requestId with another payload, or an earlier game
    command's content under a new requestId.
    """
    setup = prelude(
        draw(st.sampled_from((True, True, True, False))),
        draw(st.sampled_from(("normal", "normal", "rich", "none"))),
    )
    history: list[Command] = list(setup)
    stream: list[Command] = []
    for _ in range(draw(st.integers(1, 40))):
        request_id = rid(len(history))
        how = draw(
            st.sampled_from(("new",) * 6 + ("follow",) * 2 + ("retry", "conflict", "content"))
        )
        bets = [c for c in history if isinstance(c, Bet)]
        if how == "follow" and bets:
            command = follow_up(draw, request_id, draw(st.sampled_from(bets)))
        elif how in ("new", "follow") or not stream or (how == "conflict" and not conflicts):
            command = fresh_command(draw, request_id, history)
        else:
            earlier = draw(st.sampled_from(history))
            if how == "retry":
                command = earlier
            elif how == "conflict":
                command = altered(draw, earlier)
            else:
                command = dataclasses.replace(earlier, request_id=request_id)
        history.append(command)
        stream.append(command)
    return setup, stream


def batches(commands: Sequence[Command], cuts: set[int]) -> Iterator[list[Command]]:
    start = 0
    for cut in [*sorted(cuts), len(commands)]:
        if start < cut:
            yield list(commands[start:cut])
            start = cut


def split_points(data: st.DataObject, length: int) -> set[int]:
    """Cut points of a batch split: every command alone, one batch, or random batches."""
    how = data.draw(st.sampled_from(("single", "whole", "random")))
    if how == "single":
        return set(range(1, length))
    if how == "whole" or length < 2:
        return set()
    return data.draw(st.sets(st.integers(1, length - 1), max_size=length // 2))


# ----------------------------------------------------------------- the checks


def observed(result: Result) -> ModelResult:
    return ModelResult(
        int(result.code),
        result.balance_minor,
        result.agent_balance_minor,
        result.user_code,
        result.duplicate,
    )


def check_books(ledger: Ledger, model: ReferenceModel) -> None:
    """Double entry and bounds on the ledger's own state, and equality with the model's."""
    totals: dict[str, int] = defaultdict(int)
    for code in VALID_AGENT_CODES:
        book = ledger.book(code)
        agent = model.agents.get(code)
        if agent is None:
            assert book is None, f"the ledger has an agent {code} the model does not"
            continue
        assert book is not None, f"agent {code} is missing from the ledger"
        players = {int(user): int(entry[1]) for user, entry in book.players.items()}
        assert (book.points_minor, book.house_minor, players) == (
            agent.points_minor,
            agent.house_minor,
            agent.players,
        ), f"book of {code}"
        assert 0 <= book.points_minor <= MAX, f"points of {code}"
        assert -MAX <= book.house_minor <= MAX, f"house of {code}"
        for user, balance_minor in players.items():
            assert 0 <= balance_minor <= MAX, f"balance of player {user}"
        totals[book.currency] += book.points_minor + book.house_minor + sum(players.values())
    for currency in totals:
        issuance = ledger.aggregate(Issuance.create_id(currency), Issuance)
        issued_minor = 0 if issuance is None else issuance.balance_minor
        assert issued_minor == model.issuance.get(currency, 0), f"issuance of {currency}"
        assert -MAX <= issued_minor <= 0, f"issuance of {currency}"
        assert totals[currency] + issued_minor == 0, f"{currency} does not sum to zero"


def restart(ledger: Ledger) -> None:
    """What a restart does to the ledger's memory, over the same store: every cached book
    and request record is gone and is read back from the events."""
    ledger.clear_caches()


def run_checked(
    ledger: Ledger,
    model: ReferenceModel,
    commands: Sequence[Command],
    cuts: set[int],
    restarts: frozenset[int] = frozenset(),
) -> list[Result]:
    """Feed `commands` to both, batch by batch; compare every result and the books.

    Before the batches numbered in `restarts` the ledger forgets its caches.
    """
    results: list[Result] = []
    for number, batch in enumerate(batches(commands, cuts)):
        if number in restarts:
            restart(ledger)
        got = [ledger.handle(batch[0])] if len(batch) == 1 else ledger.handle_batch(batch)
        assert len(got) == len(batch)
        for command, result in zip(batch, got, strict=True):
            assert result.request_id == command.request_id
            expected = model.apply(command)
            assert observed(result) == expected, (
                f"command #{len(results)} {command}\n ledger: {result}\n model:  {expected}"
            )
            results.append(result)
        check_books(ledger, model)
    return results


# ------------------------------------------------------------------ properties


@PROFILE
@given(scenario=scenarios(), data=st.data())
def test_ledger_answers_every_command_like_the_reference_model(
    scenario: tuple[list[Command], list[Command]], data: st.DataObject
) -> None:
    setup, stream = scenario
    commands = setup + stream
    cuts = split_points(data, len(commands))
    # Restarts before some batches (batch 0 runs on a fresh ledger anyway).
    restarts = (
        data.draw(st.frozensets(st.integers(1, len(cuts)), max_size=2)) if cuts else frozenset()
    )
    ledger = Ledger()
    try:
        run_checked(ledger, ReferenceModel(), commands, cuts, restarts)
        # And the store an auditor gets verifies clean: chains, seals, postings, claims.
        audit = verify(ledger.recorder, ledger.mapper.transcoder)
        assert audit.findings == []
    finally:
        ledger.close()


@PROFILE
@given(scenario=scenarios(conflicts=False), data=st.data())
def test_replaying_any_prefix_appends_nothing_and_repeats_every_answer(
    scenario: tuple[list[Command], list[Command]], data: st.DataObject
) -> None:
    setup, stream = scenario
    commands = setup + stream
    ledger = Ledger()
    try:
        first = run_checked(ledger, ReferenceModel(), commands, split_points(data, len(commands)))
        last_sequence = ledger.recorder.max_notification_id()
        for _ in range(data.draw(st.integers(1, 2))):
            length = data.draw(st.integers(1, len(commands)))
            prefix = commands[:length]
            if data.draw(st.booleans()):
                restart(ledger)
            again: list[Result] = []
            for batch in batches(prefix, split_points(data, length)):
                again.extend(ledger.handle_batch(batch))
            assert ledger.recorder.max_notification_id() == last_sequence
            for command, before, after in zip(prefix, first[:length], again, strict=True):
                assert after.duplicate, f"replayed {command} is not marked duplicate"
                assert (
                    dataclasses.replace(
                        after, duplicate=before.duplicate, processed_at_ms=before.processed_at_ms
                    )
                    == before
                ), f"replayed {command}\n first: {before}\n again: {after}"
    finally:
        ledger.close()


# ------------------------------------------------ scenarios the properties found

_BROKER = CreateAgent(
    request_id=rid(0), agent_code="BUSD", currency="USD", mode="transfer", name="BUSD"
)
_ALICE = CreateUser(request_id=rid(1), agent_code="BUSD", name="alice")


def _issue(number: int, amount: str) -> IssuePoints:
    return IssuePoints(request_id=rid(number), agent_code="BUSD", amount=amount)


FOUND: dict[str, tuple[list[Command], int]] = {
    # Before the first createUser of the whole ledger, naming any userCode.
    "unknown_user_before_any_user_exists": (
        [_BROKER, Deposit(request_id=rid(1), agent_code="BUSD", user_code=1001, amount="1")],
        Code.USER_NOT_FOUND,
    ),
    # The first issue of a currency, past the ceiling.
    "first_issue_of_a_currency_past_the_ceiling": (
        [_BROKER, _issue(1, "9223372036854.78")],
        Code.BALANCE_LIMIT_EXCEEDED,
    ),
    # A userCode the edge lets through (a JSON integer of up to 40 digits).
    "user_code_beyond_64_bits": (
        [
            _BROKER,
            _ALICE,
            Deposit(request_id=rid(2), agent_code="BUSD", user_code=10**30, amount="1"),
        ],
        Code.USER_NOT_FOUND,
    ),
    # Same requestId, another payload: an amount in exponent notation is not "100".
    "retry_with_the_amount_in_exponent_notation": (
        [_BROKER, _issue(1, "100"), _issue(1, "1e2")],
        Code.IDEMPOTENCY_CONFLICT,
    ),
    "retry_with_a_signed_amount": (
        [_BROKER, _issue(1, "100"), _issue(1, "+100")],
        Code.IDEMPOTENCY_CONFLICT,
    ),
    # Same requestId, an amount of another value that differs past 28 digits.
    "retry_with_an_amount_that_differs_in_the_29th_digit": (
        [_BROKER, _issue(1, "100"), _issue(1, "100.00000000000000000000000000001")],
        Code.IDEMPOTENCY_CONFLICT,
    ),
}


@pytest.mark.parametrize("name", sorted(FOUND))
def test_scenarios_the_properties_found_match_the_reference_model(name: str) -> None:
    commands, last_code = FOUND[name]
    model = ReferenceModel()
    assert [model.apply(c) for c in commands][-1].code == last_code  # the model's reading
    ledger = Ledger()
    try:
        run_checked(ledger, ReferenceModel(), commands, set(range(1, len(commands))))
    finally:
        ledger.close()
