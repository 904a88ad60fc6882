"""Two processes writing to the same accounts on PostgreSQL never lose an update."""

from __future__ import annotations

import multiprocessing
import random
import uuid
from collections import Counter
from typing import Any

from ledger.application import Ledger
from ledger.book import AgentBook
from ledger.commands import Bet, Deposit, TransferPoints
from tests.builders import Desk

COMMANDS_PER_PROCESS = 630  # a multiple of 3 kinds x PLAYERS
PLAYERS = 3


def _hammer(env: dict[str, str], seed: int, user_codes: list[int]) -> tuple[list[int], int]:
    """Deposit 1.00, bet 0.25 and move 0.10 of points between parent and child, in
    random batches; every command must be accepted. Returns the result codes and
    how many batches were rerun after losing a race to the other process."""
    rng = random.Random(seed)
    ledger = Ledger(env)
    codes: list[int] = []
    commands = []
    for n in range(COMMANDS_PER_PROCESS):
        user = user_codes[(n // 3) % PLAYERS]
        rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        kind = n % 3
        if kind == 0:
            commands.append(Deposit(request_id=rid, agent_code="CA", user_code=user, amount="1.00"))
        elif kind == 1:
            commands.append(
                Bet(
                    request_id=rid,
                    agent_code="CA",
                    user_code=user,
                    txn_id=f"{seed}-{n}",
                    round_id=f"{seed}-{n}",
                    amount="0.25",
                )
            )
        else:
            commands.append(
                TransferPoints(request_id=rid, agent_code="OP", to_agent_code="CA", amount="0.10")
            )
    while commands:
        size = rng.randint(1, 40)
        codes.extend(r.code for r in ledger.handle_batch(commands[:size]))
        commands = commands[size:]
    ledger.close()
    return codes, ledger.races_lost


def test_two_processes_hammering_the_same_accounts_end_with_exact_balances(
    pg_ledger_env: dict[str, str],
) -> None:
    setup = Ledger(pg_ledger_env)
    desk = Desk(setup)
    casino, first_user = desk.casino(points="10000", player_funds=None)
    users = [first_user] + [
        desk.create_user(casino, f"player{n}").user_code or 0 for n in range(1, PLAYERS)
    ]
    for user in users:
        assert desk.deposit(casino, user, "100").ok
    # Leave points at OP to move down during the run.
    assert desk.transfer("CA", "OP", "5000").ok
    setup.close()

    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        runs = pool.starmap(_hammer, [(pg_ledger_env, 1, users), (pg_ledger_env, 2, users)])

    assert Counter(code for codes, _ in runs for code in codes) == {0: 2 * COMMANDS_PER_PROCESS}
    print(f"batches rerun after a lost race: {[races for _, races in runs]}")
    fresh = Ledger(pg_ledger_env)
    book = fresh.book("CA")
    assert book is not None
    # Each process sends each kind COMMANDS_PER_PROCESS / 3 times, spread evenly over players.
    deposits_per_player = 2 * COMMANDS_PER_PROCESS // 3 // PLAYERS
    bets_per_player = deposits_per_player
    transfers = 2 * COMMANDS_PER_PROCESS // 3
    for user in users:
        assert (
            book.player_balance(user) == 10_000 + deposits_per_player * 100 - bets_per_player * 25
        )
    assert book.house_minor == PLAYERS * bets_per_player * 25
    assert book.points_minor == (
        500_000 - PLAYERS * 10_000 - PLAYERS * deposits_per_player * 100 + transfers * 10
    )
    op = fresh.book("OP")
    assert op is not None and op.points_minor == 500_000 - transfers * 10
    fresh.close()


def test_a_rerun_reads_what_it_touched_before_its_refresh_so_a_busy_writer_cannot_starve_it(
    pg_ledger_env: dict[str, str],
) -> None:
    """Another instance writes the casino's book after this one's first refresh (the
    race is lost) and again each time this one reads the book from the store. A rerun
    that read the book lazily, after its refresh, would lose every race
    (BATCH_SAVE_ATTEMPTS_MAX) while the other instance kept writing: it must win the
    second."""
    mine, other = Ledger(pg_ledger_env), Ledger(pg_ledger_env)
    casino, user = Desk(mine).casino(points="10000", player_funds="100")
    book_id = AgentBook.create_id(casino)
    theirs = Desk(other)
    written: list[int] = []

    def write_there() -> None:
        assert theirs.deposit(casino, user, "0.01").ok
        written.append(1)

    refresh, read = mine._refresh, mine._repository.get

    def refresh_then_write(commands: Any) -> None:
        refresh(commands)
        if not written:  # the first attempt's window: it loses the race
            write_there()

    def read_then_write(stream_id: Any, *args: Any, **kwargs: Any) -> Any:
        found = read(stream_id, *args, **kwargs)
        if stream_id == book_id:
            write_there()
        return found

    mine._refresh = refresh_then_write  # type: ignore[method-assign]
    mine._repository.get = read_then_write  # type: ignore[method-assign]
    deposit = Deposit(request_id=str(uuid.uuid4()), agent_code=casino, user_code=user, amount="1")

    [result] = mine.handle_batch([deposit])

    assert result.code == 0 and mine.races_lost == 1 and len(written) == 2
    fresh = Ledger(pg_ledger_env)
    book = fresh.book(casino)
    assert book is not None and book.player_balance(user) == 10_000 + 100 + 2 * 1
    for ledger in (mine, other, fresh):
        ledger.close()
