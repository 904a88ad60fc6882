"""The ledger's rules, as CONTRACT.md sections 1, 2, 3 and 5 state them, on both stores.

Every test takes the `ledger` fixture, so it runs once in memory and once on
PostgreSQL. Commands go in through `Desk` (one command per `handle`) or
`handle_batch`; what comes back is checked in minor units, and a refused
command must leave every balance as it was.

Agent codes: a broker BR, an operator OP under it, casinos CA and CB under OP.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest

from ledger import commands as c
from ledger.application import Ledger
from ledger.book import AgentBook
from ledger.bounds import USER_CODE_FIRST
from ledger.domain import Issuance
from ledger.errors import Code
from ledger.results import Result
from tests.builders import Desk, rid

CEILING_MINOR = 922_337_203_685_477  # contract section 1
CEILING_USD = "9223372036854.77"
ABOVE_CEILING_USD = "9223372036854.78"
CODES = ("BR", "OP", "CA", "CB")
CURRENCIES = ("USD", "KRW", "BHD", "EUR")
NO_SUCH_USER = 999_999

LedgerFactory = Callable[[], Ledger]  # the `new_ledger` fixture

# Every rule also runs end to end: JSON on Kafka, the running service, results read back.
pytestmark = pytest.mark.stores("memory", "postgres", "kafka")


# ------------------------------------------------------------------ helpers


@pytest.fixture
def desk(ledger: Ledger) -> Desk:
    return Desk(ledger)


def accepted(result: Result, *, duplicate: bool = False) -> Result:
    """Assert an applied command (or its repeat) and return it."""
    assert (result.code, result.status) == (Code.OK, "OK"), (result.status, result.message)
    assert result.duplicate is duplicate
    assert isinstance(result.sequence, int) and result.sequence > 0
    return result


def refused(result: Result, code: Code, *, duplicate: bool = False) -> None:
    assert (result.code, result.status) == (code, code.name), (result.status, result.message)
    assert result.duplicate is duplicate
    assert result.sequence is None


def issued(ledger: Ledger, currency: str) -> int:
    """The `issuance` account of a currency: minus every point issued in it."""
    issuance = ledger.aggregate(Issuance.create_id(currency), Issuance)
    return 0 if issuance is None else issuance.balance_minor


def balances(ledger: Ledger, *codes: str) -> dict[str, Any]:
    """Every balance a command could touch: agents' points, houses, players, issuance."""
    state: dict[str, Any] = {}
    for code in codes or CODES:
        book = ledger.book(code)
        state[code] = (
            None
            if book is None
            else (
                book.points_minor,
                book.house_minor,
                {int(user): book.player_balance(int(user)) for user in book.players},
            )
        )
    for currency in CURRENCIES:
        state[currency] = issued(ledger, currency)
    return state


def points(ledger: Ledger, code: str) -> int:
    book = ledger.book(code)
    assert book is not None
    return book.points_minor


def house(ledger: Ledger, code: str) -> int:
    book = ledger.book(code)
    assert book is not None
    return book.house_minor


def player(ledger: Ledger, code: str, user: int) -> int:
    book = ledger.book(code)
    assert book is not None
    return book.player_balance(user)


def casino(
    desk: Desk,
    mode: str = "transfer",
    currency: str = "USD",
    amount: str = "10000",
    funds: str | None = "100",
) -> int:
    """BR -> OP -> CA (`mode`), all `amount` points passed down to CA, and player
    alice at CA funded with `funds` in transfer mode. Returns alice's userCode.

    (tests.builders.Desk.casino names its broker "B", which the agentCode
    pattern [A-Za-z0-9_-]{2,50} refuses, so it is not used here.)"""
    for code, parent, agent_mode in (
        ("BR", None, "transfer"),
        ("OP", "BR", "transfer"),
        ("CA", "OP", mode),
    ):
        accepted(desk.create_agent(code, parent, currency=currency, mode=agent_mode))
    accepted(desk.issue("BR", amount))
    accepted(desk.transfer("BR", "OP", amount))
    accepted(desk.transfer("OP", "CA", amount))
    user = accepted(desk.create_user("CA", "alice")).user_code
    assert user is not None
    if mode == "transfer" and funds is not None:
        accepted(desk.deposit("CA", user, funds))
    return user


def second_casino(desk: Desk, mode: str = "transfer", amount: str = "1000") -> int:
    """CB under OP with `amount` points from OP and its own player bob (unfunded)."""
    accepted(desk.create_agent("CB", "OP", mode=mode))
    accepted(desk.issue("BR", amount))
    accepted(desk.transfer("BR", "OP", amount))
    accepted(desk.transfer("OP", "CB", amount))
    user = accepted(desk.create_user("CB", "bob")).user_code
    assert user is not None
    return user


# ==================================================================== 1. Money


def test_amounts_are_read_with_the_minor_unit_exponent_of_the_agents_currency(
    desk: Desk, ledger: Ledger
) -> None:
    for code, currency, amount, minor in (
        ("KR", "KRW", "1000", 1000),
        ("JP", "JPY", "7", 7),
        ("US", "USD", "12.5", 1250),
        ("EU", "EUR", "0.05", 5),
        ("BH", "BHD", "1.234", 1234),
    ):
        assert accepted(desk.create_agent(code, currency=currency)).currency == currency
        result = accepted(desk.issue(code, amount))
        assert (result.agent_balance_minor, result.currency) == (minor, currency)
        assert points(ledger, code) == minor
        assert issued(ledger, currency) == -minor


def test_more_fractional_digits_than_the_currency_allows_is_refused_and_changes_nothing(
    desk: Desk, ledger: Ledger
) -> None:
    accepted(desk.create_agent("KR", currency="KRW"))
    accepted(desk.create_agent("US", currency="USD"))
    accepted(desk.create_agent("BH", currency="BHD"))
    before = balances(ledger, "KR", "US", "BH")
    for code, amount in (
        ("KR", "1.5"),
        ("KR", "1.0"),
        ("US", "0.001"),
        ("US", "12.500"),
        ("BH", "0.0001"),
        ("BH", "1.2340"),
    ):
        refused(desk.issue(code, amount), Code.PARAMETERS_INVALID)
    assert balances(ledger, "KR", "US", "BH") == before


BAD_AMOUNTS = (
    "-5",
    "-0.01",
    "-0",
    "NaN",
    "nan",
    "sNaN",
    "Infinity",
    "-Infinity",
    "inf",
    "1e3",
    "1E+2",
    "12.5e0",
    "",
    " ",
    " 5",
    "5 ",
    "+5",
    "1,000",
    ".5",
    "5.",
    "0x10",
    "\u0661\u0662",
    "5 USD",
)


def _send_amount(desk: Desk, kind: str, user: int, n: int, amount: str) -> Result:
    if kind == "issue":
        return desk.issue("BR", amount)
    if kind == "transfer":
        return desk.transfer("OP", "CA", amount)
    if kind == "deposit":
        return desk.deposit("CA", user, amount)
    if kind == "withdraw":
        return desk.withdraw("CA", user, amount)
    if kind == "bet":
        return desk.bet("CA", user, f"bad-{n}", "r-bad", amount)
    if kind == "win":
        return desk.win("CA", user, f"bad-{n}", None, amount, kind="bonus")
    assert kind == "refund"
    return desk.refund("CA", user, "t1", amount)


@pytest.mark.parametrize(
    "kind", ["issue", "transfer", "deposit", "withdraw", "bet", "win", "refund"]
)
def test_negative_nan_infinity_exponent_and_empty_amounts_are_refused_and_change_nothing(
    desk: Desk, ledger: Ledger, kind: str
) -> None:
    user = casino(desk)
    accepted(desk.bet("CA", user, "t1", "r1", "10"))
    before = balances(ledger)
    for n, amount in enumerate(BAD_AMOUNTS):
        result = _send_amount(desk, kind, user, n, amount)
        assert result.code == Code.PARAMETERS_INVALID, (kind, amount, result.status)
        refused(result, Code.PARAMETERS_INVALID)
    assert balances(ledger) == before


@pytest.mark.parametrize("kind", ["issue", "transfer", "deposit", "withdraw"])
def test_zero_is_refused_for_deposit_withdraw_issue_and_transfer(
    desk: Desk, ledger: Ledger, kind: str
) -> None:
    user = casino(desk)
    before = balances(ledger)
    for n, zero in enumerate(("0", "0.00", "0.0", "000")):
        refused(_send_amount(desk, kind, user, n, zero), Code.PARAMETERS_INVALID)
    assert balances(ledger) == before


def test_zero_is_allowed_for_bet_and_win(desk: Desk, ledger: Ledger) -> None:
    user = casino(desk)
    bet = accepted(desk.bet("CA", user, "t1", "r1", "0"))
    assert (bet.balance_minor, house(ledger, "CA")) == (10_000, 0)
    win = accepted(desk.win("CA", user, "w1", "r1", "0.00"))
    assert (win.balance_minor, house(ledger, "CA")) == (10_000, 0)
    assert win.sequence is not None and bet.sequence is not None
    assert win.sequence > bet.sequence
    # the zero win was a completing game win: the round is closed
    refused(desk.bet("CA", user, "t2", "r1", "1"), Code.ROUND_CLOSED)
    accepted(desk.win("CA", user, "w2", None, "0", kind="bonus"))


def test_issue_up_to_the_ceiling_is_accepted_and_one_minor_unit_more_is_refused(
    desk: Desk, ledger: Ledger
) -> None:
    accepted(desk.create_agent("BR"))
    result = accepted(desk.issue("BR", CEILING_USD))
    assert result.agent_balance_minor == CEILING_MINOR
    assert issued(ledger, "USD") == -CEILING_MINOR
    before = balances(ledger, "BR")
    refused(desk.issue("BR", "0.01"), Code.BALANCE_LIMIT_EXCEEDED)
    assert balances(ledger, "BR") == before


def test_a_first_issue_above_the_ceiling_is_balance_limit_exceeded_and_changes_nothing(
    desk: Desk, ledger: Ledger
) -> None:
    accepted(desk.create_agent("BR"))
    before = balances(ledger, "BR")
    refused(desk.issue("BR", ABOVE_CEILING_USD), Code.BALANCE_LIMIT_EXCEEDED)
    assert balances(ledger, "BR") == before
    accepted(desk.issue("BR", "1"))


def test_a_win_that_would_lift_a_player_above_the_ceiling_is_refused_and_changes_nothing(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk, amount=CEILING_USD, funds=CEILING_USD)
    assert player(ledger, "CA", user) == CEILING_MINOR
    before = balances(ledger)
    refused(desk.win("CA", user, "w1", None, "0.01", kind="bonus"), Code.BALANCE_LIMIT_EXCEEDED)
    assert balances(ledger) == before
    accepted(desk.win("CA", user, "w2", None, "0", kind="bonus"))


def test_a_point_transfer_that_would_lift_the_receiver_above_the_ceiling_is_refused(
    desk: Desk, ledger: Ledger
) -> None:
    casino(desk, amount=CEILING_USD, funds=None)  # CA holds every point there is
    accepted(desk.create_agent("CB", "OP", mode="seamless"))
    bob = accepted(desk.create_user("CB", "bob")).user_code
    assert bob is not None
    accepted(desk.win("CB", bob, "w1", None, "0.01", kind="jackpot"))  # CB's house pays 1
    accepted(desk.transfer("CB", "OP", "0.01"))
    assert (points(ledger, "OP"), points(ledger, "CA")) == (1, CEILING_MINOR)
    before = balances(ledger)
    refused(desk.transfer("CA", "OP", CEILING_USD), Code.BALANCE_LIMIT_EXCEEDED)
    assert balances(ledger) == before


def test_issuance_of_one_currency_stays_within_minus_the_ceiling_across_brokers(
    desk: Desk, ledger: Ledger
) -> None:
    """Contract silent on the negative side; the code bounds |issuance| too."""
    accepted(desk.create_agent("BR"))
    accepted(desk.create_agent("BX"))
    accepted(desk.issue("BR", CEILING_USD))
    before = balances(ledger, "BR", "BX")
    refused(desk.issue("BX", "0.01"), Code.BALANCE_LIMIT_EXCEEDED)
    assert balances(ledger, "BR", "BX") == before
    accepted(desk.create_agent("BK", currency="KRW"))
    accepted(desk.issue("BK", "1"))  # another currency has its own issuance account


def test_an_unknown_currency_is_refused_and_creates_no_agent(desk: Desk, ledger: Ledger) -> None:
    for n, currency in enumerate(("XYZ", "US", "USDD", "", "XAU", "US D", "\u00dcSD")):
        code = f"AG{n}"
        refused(desk.create_agent(code, currency=currency), Code.CURRENCY_NOT_SUPPORTED)
        assert ledger.book(code) is None


def test_a_child_currency_different_from_its_parents_is_refused(desk: Desk, ledger: Ledger) -> None:
    accepted(desk.create_agent("BR", currency="USD"))
    refused(desk.create_agent("OP", "BR", currency="EUR"), Code.CURRENCY_NOT_SUPPORTED)
    assert ledger.book("OP") is None
    accepted(desk.create_agent("OP", "BR", currency="USD"))


def test_currency_codes_are_matched_case_insensitively(desk: Desk, ledger: Ledger) -> None:
    assert accepted(desk.create_agent("BR", currency="usd")).currency == "USD"
    assert accepted(desk.create_agent("OP", "BR", currency="Usd")).currency == "USD"
    book = ledger.book("OP")
    assert book is not None and book.currency == "USD"
    assert accepted(desk.issue("BR", "1.25")).agent_balance_minor == 125
    refused(desk.issue("BR", "1.255"), Code.PARAMETERS_INVALID)


# ================================================== 2. Accounts, double entry


def mixed_scenario(desk: Desk) -> dict[str, int]:
    """Two USD casinos (transfer CA, seamless CS), a KRW tree, and a bit of everything,
    refusals included. Returns the userCodes by name."""
    for code, parent, currency, mode in (
        ("BR", None, "USD", "transfer"),
        ("OP", "BR", "USD", "transfer"),
        ("CA", "OP", "USD", "transfer"),
        ("CS", "OP", "USD", "seamless"),
        ("KR", None, "KRW", "transfer"),
        ("KC", "KR", "KRW", "transfer"),
    ):
        accepted(desk.create_agent(code, parent, currency=currency, mode=mode))
    accepted(desk.issue("BR", "10000"))
    accepted(desk.transfer("BR", "OP", "6000"))
    accepted(desk.transfer("OP", "CA", "2500"))
    accepted(desk.transfer("OP", "CS", "1500"))
    accepted(desk.transfer("CA", "OP", "100"))
    accepted(desk.transfer("OP", "BR", "50"))
    users = {}
    for agent, name in (("CA", "alice"), ("CA", "bob"), ("CS", "carol"), ("KC", "dan")):
        users[name] = accepted(desk.create_user(agent, name)).user_code
    alice, bob, carol, dan = users["alice"], users["bob"], users["carol"], users["dan"]
    accepted(desk.deposit("CA", alice, "300"))
    accepted(desk.deposit("CA", bob, "200"))
    accepted(desk.withdraw("CA", bob, "50"))
    accepted(desk.bet("CA", alice, "t1", "r1", "25.50"))
    accepted(desk.win("CA", alice, "w1", "r1", "40"))
    accepted(desk.bet("CA", bob, "t2", "r2", "10"))
    accepted(desk.refund("CA", bob, "t2"))
    accepted(desk.bet("CA", alice, "t3", "r3", "5"))
    accepted(desk.win("CA", alice, "w3", "r3", "0"))
    accepted(desk.win("CA", alice, "w4", None, "7.25", kind="bonus"))
    refused(desk.bet("CA", bob, "t5", "r5", "1000"), Code.BALANCE_NOT_ENOUGH)
    refused(desk.deposit("CS", carol, "1"), Code.PERMISSION_ERROR)
    accepted(desk.bet("CS", carol, "s1", "q1", "100"))
    accepted(desk.win("CS", carol, "s2", "q1", "250"))
    accepted(desk.bet("CS", carol, "s3", "q2", "30"))
    accepted(desk.refund("CS", carol, "s3"))
    accepted(desk.win("CS", carol, "s4", None, "1000", kind="jackpot"))
    accepted(desk.issue("KR", "1000000"))
    accepted(desk.transfer("KR", "KC", "500000"))
    accepted(desk.deposit("KC", dan, "120000"))
    accepted(desk.bet("KC", dan, "k1", "kr1", "1000"))
    accepted(desk.win("KC", dan, "k2", "kr1", "3000"))
    accepted(desk.withdraw("KC", dan))
    refused(desk.refund("KC", dan, "k9"), Code.TRANSACTION_NOT_FOUND)
    return users


MIXED_CODES = ("BR", "OP", "CA", "CS", "KR", "KC")


def test_after_a_mixed_scenario_every_balance_is_as_expected_and_all_sum_to_zero(
    desk: Desk, ledger: Ledger
) -> None:
    users = mixed_scenario(desk)
    assert points(ledger, "BR") == 405_000
    assert points(ledger, "OP") == 205_000
    assert (points(ledger, "CA"), house(ledger, "CA")) == (195_000, -1_675)
    assert player(ledger, "CA", users["alice"]) == 31_675
    assert player(ledger, "CA", users["bob"]) == 15_000
    assert (points(ledger, "CS"), house(ledger, "CS")) == (265_000, -115_000)
    assert (points(ledger, "KR"), points(ledger, "KC"), house(ledger, "KC")) == (
        500_000,
        502_000,
        -2_000,
    )
    assert player(ledger, "KC", users["dan"]) == 0
    assert (issued(ledger, "USD"), issued(ledger, "KRW")) == (-1_000_000, -1_000_000)

    totals: dict[str, int] = defaultdict(int)
    for currency in ("USD", "KRW"):
        totals[currency] += issued(ledger, currency)
    for code in MIXED_CODES:
        book = ledger.book(code)
        assert book is not None
        totals[book.currency] += (
            book.points_minor
            + book.house_minor
            + sum(book.player_balance(int(user)) for user in book.players)
        )
    assert dict(totals) == {"USD": 0, "KRW": 0}


def test_the_postings_of_the_stored_events_balance_and_rebuild_every_account(
    desk: Desk, ledger: Ledger
) -> None:
    mixed_scenario(desk)
    currency_of = {}
    for code in MIXED_CODES:
        book = ledger.book(code)
        assert book is not None
        currency_of[AgentBook.create_id(code)] = book.currency
    replayed: dict[tuple[str, str], int] = defaultdict(int)
    money_events = 0
    for notification in ledger.recorder.select_notifications(start=1, limit=1_000_000):
        event = ledger.mapper.to_domain_event(notification)
        if not isinstance(event, AgentBook.Posted):
            continue
        money_events += 1
        currency = currency_of[event.originator_id]
        for debit, credit, amount_minor in event.postings:
            assert isinstance(amount_minor, int) and amount_minor >= 0
            replayed[(currency, debit)] -= amount_minor
            replayed[(currency, credit)] += amount_minor
    assert money_events == 27  # accepted money commands of the scenario
    expected: dict[tuple[str, str], int] = {
        ("USD", "issuance"): issued(ledger, "USD"),
        ("KRW", "issuance"): issued(ledger, "KRW"),
    }
    for code in MIXED_CODES:
        book = ledger.book(code)
        assert book is not None
        expected[(book.currency, f"agent:{code}")] = book.points_minor
        expected[(book.currency, f"house:{code}")] = book.house_minor
        if book.transfer_mode:
            for user in book.players:
                expected[(book.currency, f"player:{user}")] = book.player_balance(int(user))
    assert {k: v for k, v in replayed.items() if v} == {k: v for k, v in expected.items() if v}
    for currency in ("USD", "KRW"):
        assert sum(v for (cur, _), v in replayed.items() if cur == currency) == 0


# ========================================================= 3. Agents and trees


def test_a_tree_of_any_depth_moves_points_only_one_level_at_a_time(
    desk: Desk, ledger: Ledger
) -> None:
    levels = [f"L{n}" for n in range(12)]
    accepted(desk.create_agent(levels[0]))
    for parent, child in pairwise(levels):
        accepted(desk.create_agent(child, parent))
    accepted(desk.issue(levels[0], "1000"))
    for n, (parent, child) in enumerate(pairwise(levels)):
        result = accepted(desk.transfer(parent, child, f"{999 - n}"))
        assert result.agent_balance_minor == 100  # the sender keeps 1.00 each time
    assert points(ledger, levels[-1]) == (999 - 10) * 100
    back = accepted(desk.transfer(levels[-1], levels[-2], "0.5"))
    assert (back.agent_balance_minor, points(ledger, levels[-2])) == (98_850, 150)
    before = balances(ledger, *levels)
    refused(desk.transfer(levels[0], levels[2], "1"), Code.PERMISSION_ERROR)
    refused(desk.transfer(levels[-1], levels[0], "1"), Code.PERMISSION_ERROR)
    refused(desk.issue(levels[-1], "1"), Code.PERMISSION_ERROR)
    assert balances(ledger, *levels) == before


def test_several_brokers_each_keep_their_own_tree(desk: Desk, ledger: Ledger) -> None:
    for code, parent in (("BR", None), ("OP", "BR"), ("BX", None), ("OX", "BX")):
        accepted(desk.create_agent(code, parent))
    accepted(desk.issue("BR", "100"))
    accepted(desk.issue("BX", "30"))
    accepted(desk.transfer("BR", "OP", "60"))
    accepted(desk.transfer("BX", "OX", "10"))
    before = balances(ledger, "BR", "OP", "BX", "OX")
    refused(desk.transfer("BR", "BX", "1"), Code.PERMISSION_ERROR)
    refused(desk.transfer("BX", "OP", "1"), Code.PERMISSION_ERROR)
    refused(desk.transfer("OX", "BR", "1"), Code.PERMISSION_ERROR)
    assert balances(ledger, "BR", "OP", "BX", "OX") == before
    assert [points(ledger, code) for code in ("BR", "OP", "BX", "OX")] == [
        4_000,
        6_000,
        2_000,
        1_000,
    ]
    assert issued(ledger, "USD") == -13_000


def test_create_agent_under_an_unknown_parent_is_agent_not_found(
    desk: Desk, ledger: Ledger
) -> None:
    accepted(desk.create_agent("BR"))
    refused(desk.create_agent("OP", "NOPE"), Code.AGENT_NOT_FOUND)
    assert ledger.book("OP") is None


def test_create_agent_with_a_taken_code_and_a_different_payload_is_agent_exists(
    desk: Desk, ledger: Ledger
) -> None:
    accepted(desk.create_agent("BR"))
    accepted(desk.create_agent("BX"))
    accepted(desk.create_agent("OP", "BR", name="Operator"))
    book = ledger.book("OP")
    assert book is not None
    version = book.version
    for variant in (
        {"parent": "BX", "name": "Operator"},
        {"parent": None, "name": "Operator"},
        {"parent": "BR", "name": "Other"},
        {"parent": "BR", "name": "Operator", "mode": "seamless"},
        {"parent": "BR", "name": "Operator", "currency": "EUR"},
    ):
        refused(desk.create_agent("OP", **variant), Code.AGENT_EXISTS)
    book = ledger.book("OP")
    assert book is not None
    assert (book.version, book.parent_code, book.name, book.mode, book.currency) == (
        version,
        "BR",
        "Operator",
        "transfer",
        "USD",
    )


def test_create_agent_repeated_with_the_same_payload_under_a_new_request_id_is_a_duplicate(
    desk: Desk, ledger: Ledger
) -> None:
    accepted(desk.create_agent("BR"))
    first = accepted(desk.create_agent("OP", "BR", name="Operator"))
    book = ledger.book("OP")
    assert book is not None
    version = book.version
    again_id = rid()
    again = accepted(
        desk.create_agent(
            "OP", "BR", currency="usd", mode="Transfer", name="Operator", request_id=again_id
        ),
        duplicate=True,
    )
    assert (again.request_id, again.sequence, again.event_id, again.currency) == (
        again_id,
        first.sequence,
        first.event_id,
        "USD",
    )
    book = ledger.book("OP")
    assert book is not None and book.version == version


def test_an_agent_code_outside_the_pattern_is_parameters_invalid(
    desk: Desk, ledger: Ledger
) -> None:
    for code in ("B", "x" * 51, "bad code", "bad.code", "ag\u00e9nt", "", "a/b"):
        refused(desk.create_agent(code), Code.PARAMETERS_INVALID)
        assert ledger.book(code) is None
    for code in ("ab", "x" * 50, "A_b-9"):
        accepted(desk.create_agent(code))
    refused(desk.create_agent("OP", "B"), Code.PARAMETERS_INVALID)
    refused(desk.issue("B", "1"), Code.PARAMETERS_INVALID)
    assert ledger.book("OP") is None


def test_an_unknown_mode_is_validation_error(desk: Desk, ledger: Ledger) -> None:
    for n, mode in enumerate(("hybrid", "", "trans fer", "transfers")):
        refused(desk.create_agent(f"AG{n}", mode=mode), Code.VALIDATION_ERROR)
        assert ledger.book(f"AG{n}") is None


def test_enum_values_mode_and_win_kind_are_matched_case_insensitively(
    desk: Desk, ledger: Ledger
) -> None:
    accepted(desk.create_agent("BR", mode="TRANSFER"))
    accepted(desk.create_agent("OP", "BR", mode="Transfer"))
    accepted(desk.create_agent("CA", "OP", mode="SEAMLESS"))
    book = ledger.book("CA")
    assert book is not None and book.mode == "seamless"
    user = accepted(desk.create_user("CA", "alice")).user_code
    assert user is not None
    refused(desk.deposit("CA", user, "1"), Code.PERMISSION_ERROR)
    for n, kind in enumerate(("Bonus", "JACKPOT", "FreeSpin", "proMotion")):
        accepted(desk.win("CA", user, f"w{n}", None, "1", kind=kind))
    accepted(desk.bet("CA", user, "t1", "r1", "1"))
    accepted(desk.win("CA", user, "w9", "r1", "2", kind="GAME"))
    assert (points(ledger, "CA"), house(ledger, "CA")) == (500, -500)


def test_every_command_naming_an_unknown_agent_is_agent_not_found(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    before = balances(ledger)
    refused(desk.issue("NOPE", "1"), Code.AGENT_NOT_FOUND)
    refused(desk.transfer("NOPE", "BR", "1"), Code.AGENT_NOT_FOUND)
    refused(desk.transfer("BR", "NOPE", "1"), Code.AGENT_NOT_FOUND)
    refused(desk.create_user("NOPE", "alice"), Code.AGENT_NOT_FOUND)
    refused(desk.deposit("NOPE", user, "1"), Code.AGENT_NOT_FOUND)
    refused(desk.withdraw("NOPE", user, "1"), Code.AGENT_NOT_FOUND)
    refused(desk.bet("NOPE", user, "t1", "r1", "1"), Code.AGENT_NOT_FOUND)
    refused(desk.win("NOPE", user, "w1", "r1", "1"), Code.AGENT_NOT_FOUND)
    refused(desk.refund("NOPE", user, "t1"), Code.AGENT_NOT_FOUND)
    assert balances(ledger) == before


# ===================================================================== Users


def test_create_user_assigns_a_user_code_unique_across_the_ledger(
    desk: Desk, ledger: Ledger
) -> None:
    alice = casino(desk, funds=None)
    accepted(desk.create_agent("CB", "OP"))
    result = accepted(desk.create_user("CB", "alice"))
    other_alice = result.user_code
    bob = accepted(desk.create_user("CA", "bob")).user_code
    assert all(isinstance(code, int) for code in (alice, other_alice, bob))
    assert len({alice, other_alice, bob}) == 3
    assert (result.balance_minor, result.agent_code) == (0, "CB")
    ca, cb = ledger.book("CA"), ledger.book("CB")
    assert ca is not None and cb is not None
    assert ca.has_player(alice) and not ca.has_player(other_alice)
    assert cb.has_player(other_alice) and not cb.has_player(alice)


def test_the_same_user_name_at_the_same_agent_returns_the_existing_user_code_as_a_duplicate(
    desk: Desk, ledger: Ledger
) -> None:
    casino(desk, funds=None)
    first = accepted(desk.create_user("CA", "bob"))
    book = ledger.book("CA")
    assert book is not None
    version, players = book.version, len(book.players)
    again = accepted(desk.create_user("CA", "bob"), duplicate=True)
    assert (again.user_code, again.sequence) == (first.user_code, first.sequence)
    book = ledger.book("CA")
    assert book is not None and (book.version, len(book.players)) == (version, players)
    assert accepted(desk.create_user("CA", "Bob")).user_code != first.user_code  # case matters


def test_a_user_name_outside_the_pattern_is_parameters_invalid(desk: Desk, ledger: Ledger) -> None:
    casino(desk, funds=None)
    book = ledger.book("CA")
    assert book is not None
    players = dict(book.players)
    for name in ("a", "x" * 51, "bad name", "bad-name", "\u00fcser", "", "a.b"):
        refused(desk.create_user("CA", name), Code.PARAMETERS_INVALID)
    book = ledger.book("CA")
    assert book is not None and book.players == players
    for name in ("ab", "x" * 50, "A_1"):
        accepted(desk.create_user("CA", name))


def test_a_user_of_another_agent_is_permission_error_and_changes_nothing(
    desk: Desk, ledger: Ledger
) -> None:
    alice = casino(desk)
    accepted(desk.bet("CA", alice, "t1", "r1", "1"))
    second_casino(desk)
    before = balances(ledger)
    refused(desk.deposit("CB", alice, "1"), Code.PERMISSION_ERROR)
    refused(desk.withdraw("CB", alice, "1"), Code.PERMISSION_ERROR)
    refused(desk.withdraw("CB", alice), Code.PERMISSION_ERROR)
    refused(desk.bet("CB", alice, "t2", "r2", "1"), Code.PERMISSION_ERROR)
    refused(desk.win("CB", alice, "w2", None, "1", kind="bonus"), Code.PERMISSION_ERROR)
    refused(desk.refund("CB", alice, "t1"), Code.PERMISSION_ERROR)
    assert balances(ledger) == before


def test_an_unknown_user_is_user_not_found_and_changes_nothing(desk: Desk, ledger: Ledger) -> None:
    casino(desk)
    before = balances(ledger)
    refused(desk.deposit("CA", NO_SUCH_USER, "1"), Code.USER_NOT_FOUND)
    refused(desk.withdraw("CA", NO_SUCH_USER), Code.USER_NOT_FOUND)
    refused(desk.bet("CA", NO_SUCH_USER, "t1", "r1", "1"), Code.USER_NOT_FOUND)
    refused(desk.win("CA", NO_SUCH_USER, "w1", None, "1", kind="bonus"), Code.USER_NOT_FOUND)
    refused(desk.refund("CA", NO_SUCH_USER, "t1"), Code.USER_NOT_FOUND)
    assert balances(ledger) == before


def test_an_unknown_user_is_user_not_found_even_before_any_user_exists(
    desk: Desk, ledger: Ledger
) -> None:
    accepted(desk.create_agent("BR"))
    accepted(desk.issue("BR", "10"))
    before = balances(ledger, "BR")
    refused(desk.deposit("BR", USER_CODE_FIRST, "1"), Code.USER_NOT_FOUND)
    refused(desk.bet("BR", USER_CODE_FIRST, "t1", "r1", "1"), Code.USER_NOT_FOUND)
    assert balances(ledger, "BR") == before
    assert accepted(desk.create_user("BR", "alice")).user_code == USER_CODE_FIRST


# ==================================================================== Points


def test_issue_by_a_non_root_agent_is_permission_error(desk: Desk, ledger: Ledger) -> None:
    casino(desk)
    before = balances(ledger)
    refused(desk.issue("OP", "1"), Code.PERMISSION_ERROR)
    refused(desk.issue("CA", "1"), Code.PERMISSION_ERROR)
    assert balances(ledger) == before
    assert accepted(desk.issue("BR", "1")).agent_balance_minor == 100


def test_points_move_between_a_parent_and_its_direct_child_in_either_direction(
    desk: Desk, ledger: Ledger
) -> None:
    for code, parent in (("BR", None), ("OP", "BR"), ("CA", "OP")):
        accepted(desk.create_agent(code, parent))
    issue = accepted(desk.issue("BR", "100"))
    assert (issue.agent_balance_minor, issue.currency) == (10_000, "USD")
    down = accepted(desk.transfer("BR", "OP", "40.25"))
    assert down.agent_balance_minor == 5_975  # the sender's points after it
    down2 = accepted(desk.transfer("OP", "CA", "40"))
    up = accepted(desk.transfer("CA", "OP", "0.25"))
    up2 = accepted(desk.transfer("OP", "BR", "0.5"))
    assert (down2.agent_balance_minor, up.agent_balance_minor, up2.agent_balance_minor) == (
        25,
        3_975,
        0,
    )
    assert [points(ledger, code) for code in ("BR", "OP", "CA")] == [6_025, 0, 3_975]
    sequences = [r.sequence for r in (issue, down, down2, up, up2)]
    assert sequences == sorted(sequences) and len(set(sequences)) == 5


def test_points_to_a_grandchild_grandparent_sibling_or_itself_are_permission_error(
    desk: Desk, ledger: Ledger
) -> None:
    casino(desk, funds=None)
    second_casino(desk)
    accepted(desk.issue("BR", "10"))
    before = balances(ledger)
    for sender, receiver in (
        ("BR", "CA"),
        ("CA", "BR"),
        ("CA", "CB"),
        ("CB", "CA"),
        ("OP", "OP"),
        ("BR", "BR"),
    ):
        refused(desk.transfer(sender, receiver, "1"), Code.PERMISSION_ERROR)
    assert balances(ledger) == before


def test_points_beyond_the_senders_points_are_point_not_enough(desk: Desk, ledger: Ledger) -> None:
    casino(desk, amount="50", funds=None)
    accepted(desk.issue("BR", "20"))
    before = balances(ledger)
    refused(desk.transfer("BR", "OP", "20.01"), Code.POINT_NOT_ENOUGH)
    refused(desk.transfer("OP", "CA", "0.01"), Code.POINT_NOT_ENOUGH)
    refused(desk.transfer("CA", "OP", "50.01"), Code.POINT_NOT_ENOUGH)
    assert balances(ledger) == before
    accepted(desk.transfer("CA", "OP", "50"))
    assert points(ledger, "CA") == 0


def test_a_deposit_beyond_the_agents_points_is_point_not_enough(desk: Desk, ledger: Ledger) -> None:
    user = casino(desk, amount="100", funds="60")
    before = balances(ledger)
    refused(desk.deposit("CA", user, "40.01"), Code.POINT_NOT_ENOUGH)
    assert balances(ledger) == before
    assert accepted(desk.deposit("CA", user, "40")).agent_balance_minor == 0


# =================================================================== Cashier


def test_deposit_and_withdraw_move_value_between_the_agents_points_and_the_player(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk, funds=None)
    deposit = accepted(desk.deposit("CA", user, "25.50"))
    assert (deposit.balance_minor, deposit.agent_balance_minor) == (2_550, 997_450)
    assert (deposit.user_code, deposit.currency) == (user, "USD")
    withdraw = accepted(desk.withdraw("CA", user, "0.50"))
    assert (withdraw.balance_minor, withdraw.agent_balance_minor) == (2_500, 997_500)
    assert (withdraw.sequence or 0) > (deposit.sequence or 0)
    assert (player(ledger, "CA", user), points(ledger, "CA"), house(ledger, "CA")) == (
        2_500,
        997_500,
        0,
    )


def test_deposit_and_withdraw_on_a_seamless_agent_are_permission_error(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk, mode="seamless")
    before = balances(ledger)
    refused(desk.deposit("CA", user, "1"), Code.PERMISSION_ERROR)
    refused(desk.withdraw("CA", user, "1"), Code.PERMISSION_ERROR)
    refused(desk.withdraw("CA", user), Code.PERMISSION_ERROR)
    assert balances(ledger) == before


def test_a_withdraw_without_amount_withdraws_the_whole_balance(desk: Desk, ledger: Ledger) -> None:
    user = casino(desk, funds="123.45")
    accepted(desk.bet("CA", user, "t1", "r1", "0.45"))
    result = accepted(desk.withdraw("CA", user))
    assert (result.balance_minor, result.agent_balance_minor) == (0, 1_000_000 - 45)
    assert player(ledger, "CA", user) == 0


def test_a_withdraw_without_amount_of_an_empty_balance_is_balance_not_enough(
    desk: Desk, ledger: Ledger
) -> None:
    """Contract silent (withdrawing "all" of nothing); the code refuses it like a zero amount."""
    user = casino(desk, funds=None)
    before = balances(ledger)
    refused(desk.withdraw("CA", user), Code.BALANCE_NOT_ENOUGH)
    assert balances(ledger) == before


def test_a_withdraw_beyond_the_players_balance_is_balance_not_enough(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk, funds="10")
    before = balances(ledger)
    refused(desk.withdraw("CA", user, "10.01"), Code.BALANCE_NOT_ENOUGH)
    assert balances(ledger) == before
    assert accepted(desk.withdraw("CA", user, "10")).balance_minor == 0


# ===================================================================== Games


def test_bet_and_win_in_transfer_mode_move_value_between_player_and_house(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    bet = accepted(desk.bet("CA", user, "t1", "r1", "12.50", game_code="slot-7"))
    assert (bet.balance_minor, bet.agent_balance_minor) == (8_750, 990_000)
    assert (bet.user_code, bet.txn_id, bet.type) == (user, "t1", "bet")
    assert house(ledger, "CA") == 1_250
    win = accepted(desk.win("CA", user, "w1", "r1", "30"))
    assert (win.balance_minor, win.agent_balance_minor, win.txn_id) == (11_750, 990_000, "w1")
    assert (player(ledger, "CA", user), house(ledger, "CA"), points(ledger, "CA")) == (
        11_750,
        -1_750,
        990_000,
    )
    assert win.sequence is not None and bet.sequence is not None
    assert win.sequence > bet.sequence


def test_a_bet_beyond_the_players_balance_is_balance_not_enough(desk: Desk, ledger: Ledger) -> None:
    user = casino(desk, funds="10")
    before = balances(ledger)
    refused(desk.bet("CA", user, "t1", "r1", "10.01"), Code.BALANCE_NOT_ENOUGH)
    assert balances(ledger) == before
    assert accepted(desk.bet("CA", user, "t1", "r1", "10")).balance_minor == 0


def test_bet_and_win_in_seamless_mode_move_value_between_agent_points_and_house(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk, mode="seamless")
    bet = accepted(desk.bet("CA", user, "t1", "r1", "12.50"))
    assert (bet.balance_minor, bet.agent_balance_minor) == (None, 998_750)
    assert house(ledger, "CA") == 1_250
    win = accepted(desk.win("CA", user, "w1", "r1", "30"))
    assert (win.balance_minor, win.agent_balance_minor) == (None, 1_001_750)
    refund_round = accepted(desk.bet("CA", user, "t2", "r2", "5"))
    refund = accepted(desk.refund("CA", user, "t2"))
    assert (refund_round.agent_balance_minor, refund.agent_balance_minor) == (1_001_250, 1_001_750)
    assert refund.balance_minor is None
    assert (points(ledger, "CA"), house(ledger, "CA"), player(ledger, "CA", user)) == (
        1_001_750,
        -1_750,
        0,
    )


def test_a_seamless_bet_beyond_the_agents_points_is_point_not_enough(
    desk: Desk, ledger: Ledger
) -> None:
    """Contract silent: the stake comes from the agent's points, so the code says 2005."""
    user = casino(desk, mode="seamless", amount="10")
    before = balances(ledger)
    refused(desk.bet("CA", user, "t1", "r1", "10.01"), Code.POINT_NOT_ENOUGH)
    assert balances(ledger) == before


def test_a_bet_txn_id_reused_with_the_same_content_returns_the_original_result(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    first = accepted(desk.bet("CA", user, "t1", "r1", "10", game_code="g1"))
    accepted(desk.bet("CA", user, "t2", "r1", "5"))
    before = balances(ledger)
    again_id = rid()
    again = accepted(
        desk.bet("CA", user, "t1", "r1", "10.00", game_code="g2", request_id=again_id),
        duplicate=True,
    )
    assert again.request_id == again_id
    assert (again.sequence, again.event_id, again.balance_minor, again.agent_balance_minor) == (
        first.sequence,
        first.event_id,
        first.balance_minor,
        first.agent_balance_minor,
    )
    assert balances(ledger) == before


def test_a_win_txn_id_reused_with_the_same_content_returns_the_original_result(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    accepted(desk.bet("CA", user, "t1", "r1", "10"))
    first = accepted(desk.win("CA", user, "w1", "r1", "25"))  # closes r1
    before = balances(ledger)
    again = accepted(desk.win("CA", user, "w1", "r1", "25"), duplicate=True)
    assert (again.sequence, again.balance_minor) == (first.sequence, 11_500)
    bonus = accepted(desk.win("CA", user, "b1", None, "1", kind="bonus"))
    assert (
        accepted(desk.win("CA", user, "b1", None, "1", kind="bonus"), duplicate=True).sequence
        == bonus.sequence
    )
    assert balances(ledger)["CA"][2][user] == before["CA"][2][user] + 100


def test_a_txn_id_reused_with_different_content_is_duplicate_transaction(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    bob = accepted(desk.create_user("CA", "bob")).user_code
    assert bob is not None
    accepted(desk.deposit("CA", bob, "50"))
    accepted(desk.bet("CA", user, "t1", "r1", "10"))
    accepted(desk.win("CA", user, "w1", "r1", "5", completed=False))
    before = balances(ledger)
    for result in (
        desk.bet("CA", user, "t1", "r1", "11"),  # amount
        desk.bet("CA", user, "t1", "r2", "10"),  # round
        desk.bet("CA", bob, "t1", "r1", "10"),  # user
        desk.win("CA", user, "t1", "r1", "10"),  # type
        desk.win("CA", user, "w1", "r1", "6"),
        desk.win("CA", user, "w1", "r2", "5"),
        desk.win("CA", bob, "w1", "r1", "5"),
        desk.bet("CA", user, "w1", "r1", "5"),
    ):
        refused(result, Code.DUPLICATE_TRANSACTION)
    assert balances(ledger) == before


def test_a_txn_id_is_unique_per_agent_so_another_agent_may_use_it(
    desk: Desk, ledger: Ledger
) -> None:
    alice = casino(desk)
    bob = second_casino(desk)
    accepted(desk.deposit("CB", bob, "10"))
    accepted(desk.bet("CA", alice, "t1", "r1", "10"))
    assert accepted(desk.bet("CB", bob, "t1", "r1", "10")).balance_minor == 0
    assert (house(ledger, "CA"), house(ledger, "CB")) == (1_000, 1_000)


def test_a_completed_game_win_closes_the_round_and_a_later_bet_is_round_closed(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    accepted(desk.bet("CA", user, "t1", "r1", "10"))
    accepted(desk.win("CA", user, "w1", "r1", "20"))
    before = balances(ledger)
    refused(desk.bet("CA", user, "t2", "r1", "1"), Code.ROUND_CLOSED)
    assert balances(ledger) == before
    accepted(desk.bet("CA", user, "t2", "r2", "1"))


def test_a_game_win_on_a_closed_round_is_round_closed(desk: Desk, ledger: Ledger) -> None:
    user = casino(desk)
    accepted(desk.bet("CA", user, "t1", "r1", "10"))
    accepted(desk.win("CA", user, "w1", "r1", "20"))
    before = balances(ledger)
    refused(desk.win("CA", user, "w2", "r1", "1"), Code.ROUND_CLOSED)
    refused(desk.win("CA", user, "w3", "r1", "1", completed=False), Code.ROUND_CLOSED)
    assert balances(ledger) == before


def test_a_game_win_for_a_round_without_a_bet_is_transaction_not_found(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    before = balances(ledger)
    refused(desk.win("CA", user, "w1", "r1", "5"), Code.TRANSACTION_NOT_FOUND)
    refused(
        desk.win("CA", user, "w2", "r1", "5", kind="game", completed=False),
        Code.TRANSACTION_NOT_FOUND,
    )
    assert balances(ledger) == before


def test_a_game_win_for_a_round_whose_bets_were_all_refunded_is_transaction_not_found(
    desk: Desk, ledger: Ledger
) -> None:
    """A refund gives the stake back: a game win on that round would pay on nothing."""
    user = casino(desk)
    accepted(desk.bet("CA", user, "t1", "r1", "5"))
    accepted(desk.bet("CA", user, "t2", "r1", "3"))
    accepted(desk.refund("CA", user, "t1"))
    accepted(desk.refund("CA", user, "t2"))
    before = balances(ledger)
    refused(desk.win("CA", user, "w1", "r1", "50"), Code.TRANSACTION_NOT_FOUND)
    refused(desk.win("CA", user, "w2", "r1", "50", completed=False), Code.TRANSACTION_NOT_FOUND)
    assert balances(ledger) == before
    # The round is still open: a new bet makes a game win possible again, one refund
    # of two bets leaves one standing.
    accepted(desk.bet("CA", user, "t3", "r1", "2"))
    accepted(desk.bet("CA", user, "t4", "r1", "2"))
    accepted(desk.refund("CA", user, "t3"))
    assert accepted(desk.win("CA", user, "w3", "r1", "7")).balance_minor == 10_000 - 200 + 700


def test_bonus_jackpot_freespin_and_promotion_wins_need_no_bet_or_round(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    expected = 10_000
    for n, kind in enumerate(("bonus", "jackpot", "freespin", "promotion")):
        result = accepted(desk.win("CA", user, f"w{n}", None, "1.5", kind=kind))
        expected += 150
        assert result.balance_minor == expected
        accepted(desk.win("CA", user, f"x{n}", f"no-bet-{n}", "1", kind=kind))
        expected += 100
    assert (player(ledger, "CA", user), house(ledger, "CA")) == (expected, 10_000 - expected)


def test_a_non_game_win_does_not_close_the_round(desk: Desk, ledger: Ledger) -> None:
    """Contract ambiguous ("closes with a win whose completed is true" vs "non-game kinds
    need no ... round"); the code closes rounds only with completing game wins."""
    user = casino(desk)
    accepted(desk.bet("CA", user, "t1", "r1", "10"))
    accepted(desk.win("CA", user, "b1", "r1", "1", kind="bonus", completed=True))
    accepted(desk.bet("CA", user, "t2", "r1", "1"))
    accepted(desk.refund("CA", user, "t1"))


def test_a_win_with_completed_false_keeps_the_round_open(desk: Desk, ledger: Ledger) -> None:
    user = casino(desk)
    accepted(desk.bet("CA", user, "t1", "r1", "10"))
    accepted(desk.win("CA", user, "w1", "r1", "3", completed=False))
    accepted(desk.bet("CA", user, "t2", "r1", "10"))
    accepted(desk.win("CA", user, "w2", "r1", "4", completed=False))
    accepted(desk.win("CA", user, "w3", "r1", "5", completed=True))
    refused(desk.bet("CA", user, "t3", "r1", "1"), Code.ROUND_CLOSED)
    assert player(ledger, "CA", user) == 10_000 - 2_000 + 1_200


def test_a_game_win_without_round_id_is_validation_error(desk: Desk, ledger: Ledger) -> None:
    """Contract: roundId is a field of win; the code requires it for game wins (1002)."""
    user = casino(desk)
    before = balances(ledger)
    refused(desk.win("CA", user, "w1", None, "1"), Code.VALIDATION_ERROR)
    assert balances(ledger) == before


def test_an_empty_or_over_long_txn_id_round_id_or_game_code_is_parameters_invalid(
    desk: Desk, ledger: Ledger
) -> None:
    """README decision: 1 to 128 characters. Nothing changes, and a refused refund
    leaves no remembered txnId behind."""
    user = casino(desk)
    longest, too_long = "t" * 128, "t" * 129
    before = balances(ledger)
    for result in (
        desk.bet("CA", user, "", "r1", "1"),
        desk.bet("CA", user, too_long, "r1", "1"),
        desk.bet("CA", user, "t1", "", "1"),
        desk.bet("CA", user, "t1", too_long, "1"),
        desk.bet("CA", user, "t1", "r1", "1", game_code=""),
        desk.bet("CA", user, "t1", "r1", "1", game_code=too_long),
        desk.win("CA", user, "", "r1", "1"),
        desk.win("CA", user, "w1", "", "1"),
        desk.win("CA", user, too_long, None, "1", kind="bonus"),
        desk.refund("CA", user, ""),
        desk.refund("CA", user, too_long),
    ):
        refused(result, Code.PARAMETERS_INVALID)
    assert balances(ledger) == before
    accepted(desk.bet("CA", user, longest, longest, "1", game_code=longest))
    accepted(desk.win("CA", user, "w" * 128, longest, "2"))
    accepted(desk.bet("CA", user, "t" * 127 + "x", "r1", "1"))
    accepted(desk.refund("CA", user, "t" * 127 + "x"))


def test_an_unknown_win_kind_is_validation_error(desk: Desk, ledger: Ledger) -> None:
    user = casino(desk)
    before = balances(ledger)
    for n, kind in enumerate(("tip", "", "bonus ")):
        refused(desk.win("CA", user, f"w{n}", None, "1", kind=kind), Code.VALIDATION_ERROR)
    assert balances(ledger) == before


@pytest.mark.parametrize("mode", ["transfer", "seamless"])
def test_a_refund_reverses_the_bets_postings_exactly(desk: Desk, ledger: Ledger, mode: str) -> None:
    user = casino(desk, mode=mode)
    before = balances(ledger)
    accepted(desk.bet("CA", user, "t1", "r1", "7.77"))
    assert balances(ledger) != before
    refund = accepted(desk.refund("CA", user, "t1"))
    assert (refund.txn_id, refund.type) == ("t1", "refund")
    assert balances(ledger) == before
    if mode == "transfer":
        assert refund.balance_minor == 10_000


def test_a_refund_of_an_amount_other_than_the_bet_is_parameters_invalid(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    accepted(desk.bet("CA", user, "t1", "r1", "10"))
    before = balances(ledger)
    refused(desk.refund("CA", user, "t1", "10.01"), Code.PARAMETERS_INVALID)
    refused(desk.refund("CA", user, "t1", "9.99"), Code.PARAMETERS_INVALID)
    refused(desk.refund("CA", user, "t1", "0"), Code.PARAMETERS_INVALID)
    assert balances(ledger) == before
    assert accepted(desk.refund("CA", user, "t1", "10.0")).balance_minor == 10_000


def test_a_refund_on_a_closed_round_is_round_closed(desk: Desk, ledger: Ledger) -> None:
    user = casino(desk)
    accepted(desk.bet("CA", user, "t1", "r1", "10"))
    accepted(desk.win("CA", user, "w1", "r1", "0"))
    before = balances(ledger)
    refused(desk.refund("CA", user, "t1"), Code.ROUND_CLOSED)
    assert balances(ledger) == before


def test_a_refund_after_an_incomplete_win_is_allowed(desk: Desk, ledger: Ledger) -> None:
    user = casino(desk)
    accepted(desk.bet("CA", user, "t1", "r1", "10"))
    accepted(desk.win("CA", user, "w1", "r1", "4", completed=False))
    assert accepted(desk.refund("CA", user, "t1")).balance_minor == 10_400


def test_refunding_an_already_refunded_bet_returns_the_first_refunds_result(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    accepted(desk.bet("CA", user, "t1", "r1", "10"))
    first = accepted(desk.refund("CA", user, "t1"))
    accepted(desk.bet("CA", user, "t2", "r1", "3"))
    before = balances(ledger)
    again_id = rid()
    again = accepted(desk.refund("CA", user, "t1", request_id=again_id), duplicate=True)
    assert again.request_id == again_id
    assert (again.sequence, again.event_id, again.balance_minor) == (
        first.sequence,
        first.event_id,
        10_000,
    )
    assert balances(ledger) == before
    accepted(desk.win("CA", user, "w1", "r1", "0"))  # the round closes after the refund
    late = accepted(desk.refund("CA", user, "t1"), duplicate=True)
    assert late.sequence == first.sequence


def test_a_refund_naming_a_win_or_an_unknown_txn_id_is_transaction_not_found(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    accepted(desk.win("CA", user, "w1", None, "1", kind="bonus"))
    before = balances(ledger)
    refused(desk.refund("CA", user, "w1"), Code.TRANSACTION_NOT_FOUND)
    refused(desk.refund("CA", user, "t1"), Code.TRANSACTION_NOT_FOUND)
    refused(desk.refund("CA", user, "t1"), Code.TRANSACTION_NOT_FOUND)  # a second, new request
    assert balances(ledger) == before


def test_a_refund_that_overtakes_its_bet_blocks_the_late_bet(desk: Desk, ledger: Ledger) -> None:
    user = casino(desk)
    before = balances(ledger)
    refused(desk.refund("CA", user, "t1"), Code.TRANSACTION_NOT_FOUND)
    late_id = rid()
    refused(
        desk.bet("CA", user, "t1", "r1", "10", request_id=late_id), Code.TRANSACTION_ROLLED_BACK
    )
    refused(
        desk.bet("CA", user, "t1", "r1", "10", request_id=late_id),
        Code.TRANSACTION_ROLLED_BACK,
        duplicate=True,
    )
    refused(desk.bet("CA", user, "t1", "r1", "10"), Code.TRANSACTION_ROLLED_BACK)
    assert balances(ledger) == before
    accepted(desk.bet("CA", user, "t2", "r1", "10"))  # the round was never opened by t1


def test_a_bet_repeated_after_its_refund_is_transaction_rolled_back(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    accepted(desk.bet("CA", user, "t1", "r1", "10"))
    accepted(desk.refund("CA", user, "t1"))
    before = balances(ledger)
    refused(desk.bet("CA", user, "t1", "r1", "10"), Code.TRANSACTION_ROLLED_BACK)
    assert balances(ledger) == before


def test_a_refund_naming_another_player_of_the_same_agent_is_parameters_invalid(
    desk: Desk, ledger: Ledger
) -> None:
    """Contract silent; the code refuses a refund whose userCode is not the bet's."""
    user = casino(desk)
    bob = accepted(desk.create_user("CA", "bob")).user_code
    assert bob is not None
    accepted(desk.bet("CA", user, "t1", "r1", "10"))
    before = balances(ledger)
    refused(desk.refund("CA", bob, "t1"), Code.PARAMETERS_INVALID)
    assert balances(ledger) == before


# =============================================================== Idempotency


def test_the_same_request_id_and_payload_returns_the_original_result_and_appends_nothing(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    request_id = rid()
    first = accepted(desk.bet("CA", user, "t1", "r1", "10", request_id=request_id))
    accepted(desk.bet("CA", user, "t2", "r1", "5"))
    before, last = balances(ledger), ledger.recorder.max_notification_id()
    again = accepted(desk.bet("CA", user, "t1", "r1", "10", request_id=request_id), duplicate=True)
    assert (again.code, again.request_id, again.sequence, again.event_id) == (
        first.code,
        request_id,
        first.sequence,
        first.event_id,
    )
    assert (again.balance_minor, again.agent_balance_minor) == (9_000, 990_000)
    assert ledger.recorder.max_notification_id() == last
    assert balances(ledger) == before


def test_a_retry_with_an_equal_amount_spelled_differently_or_a_new_timestamp_is_a_repeat(
    desk: Desk, ledger: Ledger
) -> None:
    """Contract silent on what "same payload" means; the code compares amounts by value
    and leaves timestampMs out."""
    user = casino(desk)
    request_id = rid()
    first = accepted(desk.deposit("CA", user, "10", request_id=request_id, timestamp_ms=1))
    last = ledger.recorder.max_notification_id()
    again = accepted(
        desk.deposit("CA", user, "10.00", request_id=request_id, timestamp_ms=2), duplicate=True
    )
    assert (again.sequence, again.balance_minor) == (first.sequence, 11_000)
    assert ledger.recorder.max_notification_id() == last


def test_a_retry_spelling_the_request_id_in_capitals_is_the_same_request(
    desk: Desk, ledger: Ledger
) -> None:
    """A requestId is a UUID: its case names no other request (README, "Decisions")."""
    user = casino(desk)
    request_id = rid()
    first = accepted(desk.deposit("CA", user, "10", request_id=request_id))
    last = ledger.recorder.max_notification_id()
    again = accepted(desk.deposit("CA", user, "10", request_id=request_id.upper()), duplicate=True)
    assert again.request_id == request_id.upper()  # echoed as the retry spelled it
    assert (again.sequence, again.event_id, again.balance_minor) == (
        first.sequence,
        first.event_id,
        11_000,
    )
    assert ledger.recorder.max_notification_id() == last
    refused(
        desk.deposit("CA", user, "20", request_id=request_id.upper()), Code.IDEMPOTENCY_CONFLICT
    )


@pytest.mark.stores("memory", "postgres")
def test_a_request_id_in_capitals_finds_the_record_in_the_store_not_only_in_memory(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    request_id = rid().upper()
    first = accepted(desk.deposit("CA", user, "10", request_id=request_id))
    last = ledger.recorder.max_notification_id()
    ledger.clear_caches()
    again = accepted(desk.deposit("CA", user, "10", request_id=request_id.lower()), duplicate=True)
    assert (again.request_id, again.sequence) == (request_id.lower(), first.sequence)
    assert ledger.recorder.max_notification_id() == last


def test_the_same_request_id_with_a_different_payload_is_idempotency_conflict(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    request_id = rid()
    first = accepted(desk.deposit("CA", user, "10", request_id=request_id))
    before = balances(ledger)
    refused(desk.deposit("CA", user, "20", request_id=request_id), Code.IDEMPOTENCY_CONFLICT)
    refused(desk.withdraw("CA", user, "10", request_id=request_id), Code.IDEMPOTENCY_CONFLICT)
    refused(desk.issue("BR", "10", request_id=request_id), Code.IDEMPOTENCY_CONFLICT)
    refused(
        desk.bet("CA", user, "t1", "r1", "10", request_id=request_id), Code.IDEMPOTENCY_CONFLICT
    )
    assert balances(ledger) == before
    again = accepted(desk.deposit("CA", user, "10", request_id=request_id), duplicate=True)
    assert again.sequence == first.sequence


def test_a_rejection_is_remembered_even_after_its_cause_is_gone(desk: Desk, ledger: Ledger) -> None:
    user = casino(desk, funds="10")
    request_id = rid()
    refused(desk.bet("CA", user, "t1", "r1", "50", request_id=request_id), Code.BALANCE_NOT_ENOUGH)
    accepted(desk.deposit("CA", user, "100"))
    before = balances(ledger)
    refused(
        desk.bet("CA", user, "t1", "r1", "50", request_id=request_id),
        Code.BALANCE_NOT_ENOUGH,
        duplicate=True,
    )
    assert balances(ledger) == before
    assert accepted(desk.bet("CA", user, "t1", "r1", "50")).balance_minor == 6_000


def test_a_repeat_after_a_restart_gives_the_same_answer(
    new_ledger: LedgerFactory, ledger: Ledger, desk: Desk
) -> None:
    user = casino(desk)
    commands = [
        c.CreateUser(request_id=rid(), agent_code="CA", name="bob"),
        c.Bet(
            request_id=rid(),
            agent_code="CA",
            user_code=user,
            txn_id="t1",
            round_id="r1",
            amount="10",
        ),
        c.Bet(
            request_id=rid(),
            agent_code="CA",
            user_code=user,
            txn_id="t2",
            round_id="r1",
            amount="1000",
        ),
        c.Win(
            request_id=rid(),
            agent_code="CA",
            user_code=user,
            txn_id="w1",
            round_id="r1",
            amount="2.5",
        ),
        c.Refund(request_id=rid(), agent_code="CA", user_code=user, txn_id="t9"),
        c.CreateUser(request_id=rid(), agent_code="CA", name="alice"),  # by-content repeat
    ]
    first = [ledger.handle(command) for command in commands]
    assert [r.code for r in first] == [
        0,
        0,
        Code.BALANCE_NOT_ENOUGH,
        0,
        Code.TRANSACTION_NOT_FOUND,
        0,
    ]
    before = balances(ledger)

    restarted = new_ledger()
    assert balances(restarted) == before
    last = restarted.recorder.max_notification_id()
    for command, original in zip(commands, first, strict=True):
        again = restarted.handle(command)
        assert again.duplicate is True
        assert (
            again.code,
            again.sequence,
            again.user_code,
            again.balance_minor,
            again.agent_balance_minor,
            again.event_id,
        ) == (
            original.code,
            original.sequence,
            original.user_code,
            original.balance_minor,
            original.agent_balance_minor,
            original.event_id,
        )
    assert restarted.recorder.max_notification_id() == last
    assert balances(restarted) == before
    refused(
        restarted.handle(
            c.Bet(
                request_id=commands[1].request_id,
                agent_code="CA",
                user_code=user,
                txn_id="t1",
                round_id="r1",
                amount="11",
            )
        ),
        Code.IDEMPOTENCY_CONFLICT,
    )
    refused(Desk(restarted).bet("CA", user, "t9", "r1", "1"), Code.TRANSACTION_ROLLED_BACK)


def test_a_repeat_by_content_inside_one_batch_keeps_the_original_sequence_after_a_restart(
    new_ledger: LedgerFactory, ledger: Ledger, desk: Desk
) -> None:
    user = casino(desk)
    bet = c.Bet(
        request_id=rid(), agent_code="CA", user_code=user, txn_id="t1", round_id="r1", amount="10"
    )
    same_content = c.Bet(
        request_id=rid(), agent_code="CA", user_code=user, txn_id="t1", round_id="r1", amount="10"
    )
    original, repeat = ledger.handle_batch([bet, same_content])
    accepted(original)
    accepted(repeat, duplicate=True)
    assert repeat.sequence == original.sequence

    restarted = new_ledger()
    again = accepted(restarted.handle(same_content), duplicate=True)
    assert (again.sequence, again.balance_minor) == (original.sequence, 9_000)


# In process only: an InvalidCommand is what the edge makes of bad JSON; over Kafka
# the same path is covered by tests/e2e (VALIDATION_ERROR answers, the DLQ).
@pytest.mark.stores("memory", "postgres")
def test_an_invalid_command_is_answered_with_its_code_and_remembered(
    new_ledger: LedgerFactory, ledger: Ledger, desk: Desk
) -> None:
    user = casino(desk)
    request_id = rid()
    raw = b'{"type": "bet", "requestId": "...", "agentCode": "CA", "amount": []}'
    invalid = c.InvalidCommand(
        request_id=request_id,
        agent_code="CA",
        raw_type="bet",
        code=Code.VALIDATION_ERROR,
        message="amount: not a string",
        payload_digest=hashlib.sha256(raw).hexdigest(),
    )
    result = ledger.handle(invalid)
    refused(result, Code.VALIDATION_ERROR)
    assert (result.request_id, result.type, result.agent_code) == (request_id, "bet", "CA")
    refused(ledger.handle(invalid), Code.VALIDATION_ERROR, duplicate=True)
    before = balances(ledger)
    valid = c.Bet(
        request_id=request_id,
        agent_code="CA",
        user_code=user,
        txn_id="t1",
        round_id="r1",
        amount="10",
    )
    refused(ledger.handle(valid), Code.IDEMPOTENCY_CONFLICT)
    assert balances(ledger) == before

    restarted = new_ledger()
    refused(restarted.handle(invalid), Code.VALIDATION_ERROR, duplicate=True)
    refused(restarted.handle(valid), Code.IDEMPOTENCY_CONFLICT)
    assert balances(restarted) == before


# ===================================================================== Batch


# In process only: over Kafka, commands of different agents travel on different
# partitions, so one batch of them has no order to keep.
@pytest.mark.stores("memory", "postgres")
def test_later_commands_in_one_batch_see_the_effects_of_earlier_ones(ledger: Ledger) -> None:
    user = USER_CODE_FIRST  # a fresh ledger's first userCode (the code's choice)
    commands: list[c.Command] = [
        c.CreateAgent(request_id=rid(), agent_code="BR", currency="USD", mode="transfer"),
        c.CreateAgent(
            request_id=rid(), agent_code="OP", parent_code="BR", currency="USD", mode="transfer"
        ),
        c.CreateAgent(
            request_id=rid(), agent_code="CA", parent_code="OP", currency="USD", mode="transfer"
        ),
        c.IssuePoints(request_id=rid(), agent_code="BR", amount="1000"),
        c.TransferPoints(request_id=rid(), agent_code="BR", to_agent_code="OP", amount="600"),
        c.TransferPoints(request_id=rid(), agent_code="OP", to_agent_code="CA", amount="400"),
        c.CreateUser(request_id=rid(), agent_code="CA", name="alice"),
        c.Deposit(request_id=rid(), agent_code="CA", user_code=user, amount="150"),
        c.Bet(
            request_id=rid(),
            agent_code="CA",
            user_code=user,
            txn_id="t1",
            round_id="r1",
            amount="20",
        ),
        c.Bet(
            request_id=rid(),
            agent_code="CA",
            user_code=user,
            txn_id="t2",
            round_id="r1",
            amount="500",
        ),
        c.Win(
            request_id=rid(),
            agent_code="CA",
            user_code=user,
            txn_id="w1",
            round_id="r1",
            amount="45",
        ),
    ]
    results = ledger.handle_batch(commands)
    assert [r.request_id for r in results] == [cmd.request_id for cmd in commands]
    assert [r.type for r in results] == [cmd.type_name for cmd in commands]
    assert [r.code for r in results] == [0] * 9 + [Code.BALANCE_NOT_ENOUGH, 0]
    assert results[6].user_code == user
    assert [r.agent_balance_minor for r in results[3:6]] == [100_000, 40_000, 20_000]
    assert [r.balance_minor for r in results[7:]] == [15_000, 13_000, None, 17_500]
    sequences = [r.sequence for r in results if r.ok]
    assert all(isinstance(s, int) for s in sequences)
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    assert results[9].sequence is None
    assert (points(ledger, "CA"), house(ledger, "CA"), player(ledger, "CA", user)) == (
        25_000,
        -2_500,
        17_500,
    )
    assert issued(ledger, "USD") == -100_000


def test_a_duplicate_request_id_inside_one_batch_is_answered_duplicate_with_the_same_sequence(
    desk: Desk, ledger: Ledger
) -> None:
    user = casino(desk)
    deposit = c.Deposit(request_id=rid(), agent_code="CA", user_code=user, amount="10")
    conflict = c.Deposit(
        request_id=deposit.request_id, agent_code="CA", user_code=user, amount="20"
    )
    first, again, clash = ledger.handle_batch([deposit, deposit, conflict])
    accepted(first)
    accepted(again, duplicate=True)
    refused(clash, Code.IDEMPOTENCY_CONFLICT)
    assert (again.sequence, again.event_id, again.balance_minor) == (
        first.sequence,
        first.event_id,
        11_000,
    )
    assert player(ledger, "CA", user) == 11_000
    accepted(ledger.handle(deposit), duplicate=True)
    assert player(ledger, "CA", user) == 11_000


# ============================================ Replays and concurrent instances


class RecordingDesk(Desk):
    """A Desk that keeps every command it sent, like a Kafka topic would."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(ledger)
        self.sent: list[tuple[c.Command, Result]] = []

    def send(self, command: c.Command) -> Result:
        result = super().send(command)
        self.sent.append((command, result))
        return result


def _same_answer(original: Result, repeat: Result) -> None:
    assert repeat.duplicate is True
    assert (repeat.request_id, repeat.code, repeat.sequence, repeat.event_id) == (
        original.request_id,
        original.code,
        original.sequence,
        original.event_id,
    )
    assert (repeat.balance_minor, repeat.agent_balance_minor, repeat.user_code) == (
        original.balance_minor,
        original.agent_balance_minor,
        original.user_code,
    )


def test_replaying_every_command_from_the_start_answers_each_as_before_and_appends_nothing(
    new_ledger: LedgerFactory, ledger: Ledger
) -> None:
    desk = RecordingDesk(ledger)
    mixed_scenario(desk)
    commands = [command for command, _ in desk.sent]
    before, last = balances(ledger, *MIXED_CODES), ledger.recorder.max_notification_id()

    restarted = new_ledger()
    replayed = restarted.handle_batch(commands)  # the topic replayed from offset zero
    for (_, original), repeat in zip(desk.sent, replayed, strict=True):
        _same_answer(original, repeat)
    for command, original in desk.sent:  # and again one by one
        _same_answer(original, restarted.handle(command))
    assert restarted.recorder.max_notification_id() == last
    assert balances(restarted, *MIXED_CODES) == before


# In process only: it is about two core instances on one store; the service-level
# version is tests/e2e/test_ingest.py (two instances in one consumer group).
@pytest.mark.stores("memory", "postgres")
def test_two_ledger_instances_over_one_store_see_each_others_writes(
    new_ledger: LedgerFactory, ledger: Ledger
) -> None:
    """On PostgreSQL two processes share the tables; in memory it is one instance."""
    one = Desk(ledger)
    user = casino(one)
    two = Desk(new_ledger())
    accepted(two.deposit("CA", user, "10"))
    accepted(one.bet("CA", user, "t1", "r1", "5"))
    accepted(two.bet("CA", user, "t2", "r1", "5"))
    refused(one.bet("CA", user, "t2", "r1", "6"), Code.DUPLICATE_TRANSACTION)
    accepted(one.win("CA", user, "w1", "r1", "1"))
    refused(two.bet("CA", user, "t3", "r1", "1"), Code.ROUND_CLOSED)
    accepted(two.transfer("CA", "OP", "1"))
    shared = rid()
    first = accepted(one.withdraw("CA", user, "1", request_id=shared))
    again = accepted(two.withdraw("CA", user, "1", request_id=shared), duplicate=True)
    assert again.sequence == first.sequence
    assert accepted(one.deposit("CA", user, "2")).balance_minor == 10_200
    # OP's points came from `two`; a command on `one` must see them (its cache alone is stale)
    assert accepted(one.transfer("OP", "BR", "1")).agent_balance_minor == 0
    fresh = new_ledger()
    assert balances(fresh, "CA")["CA"] == (988_800, 900, {user: 10_200})
    assert (points(fresh, "OP"), points(fresh, "BR")) == (0, 100)
