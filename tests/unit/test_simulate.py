"""The workload generator behind `ledger simulate` and `make bench` (bench/simulate.py)."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter

import orjson
import pytest

from bench.simulate import Player, Shape, World, build_world, deposits, play, to_wire
from consumers.decode import decode
from ledger import commands as c
from ledger.application import Ledger

PLAY_COMMANDS = 20_000


def planned_codes(world: World) -> dict[Player, int]:
    """userCodes as a ledger hands them out when it sees the createUsers in order."""
    return {player: 1001 + n for n, player in enumerate(world.players)}


def stream(seed: int, count: int = PLAY_COMMANDS) -> list[c.Command]:
    world = build_world(seed)
    return list(itertools.islice(play(world, planned_codes(world), seed), count))


def test_the_same_seed_gives_the_same_commands_and_another_seed_others() -> None:
    assert [to_wire(x) for x in stream(1)] == [to_wire(x) for x in stream(1)]
    assert build_world(1).waves == build_world(1).waves
    assert {x.request_id for x in stream(1)}.isdisjoint({x.request_id for x in stream(2)})


def test_a_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    assert stream(3, 500) == stream(3, 2_000)[:500]


def test_about_one_percent_of_commands_repeat_an_earlier_request_exactly() -> None:
    commands = stream(1)
    first: dict[str, c.Command] = {}
    repeats = 0
    for command in commands:
        if command.request_id in first:
            repeats += 1
            assert command == first[command.request_id]  # a retry: the same payload
        else:
            first[command.request_id] = command
    assert 0.007 < repeats / len(commands) < 0.013


def test_some_refunds_overtake_their_bets() -> None:
    refunded_first = set()
    overtaken = 0
    for command in stream(1):
        key = (command.agent_code, getattr(command, "txn_id", None))
        if isinstance(command, c.Refund):
            refunded_first.add(key)
        elif isinstance(command, c.Bet) and key in refunded_first:
            overtaken += 1
    assert overtaken >= 10


def test_agents_of_both_modes_and_their_players_play() -> None:
    world = build_world(1)
    modes = Counter(x.mode for wave in world.waves for x in wave if isinstance(x, c.CreateAgent))
    assert modes["transfer"] > 0 and modes["seamless"] > 0
    transfer_agents = {p.agent_code for p in world.players if p.transfer}
    betting = {x.agent_code in transfer_agents for x in stream(1) if isinstance(x, c.Bet)}
    assert betting == {True, False}


def test_the_mix_has_deposits_withdrawals_transfers_and_bonus_wins() -> None:
    kinds = Counter(x.kind if isinstance(x, c.Win) else type(x).__name__ for x in stream(1))
    assert kinds["Bet"] > 0.4 * PLAY_COMMANDS and kinds["game"] > 0.3 * PLAY_COMMANDS
    for kind in ("Refund", "Deposit", "Withdraw", "TransferPoints"):
        assert kinds[kind] > 0, kind
    assert kinds["bonus"] + kinds["jackpot"] + kinds["freespin"] + kinds["promotion"] > 0


def test_activity_is_skewed_towards_a_few_players() -> None:
    bets = Counter(x.user_code for x in stream(1) if isinstance(x, c.Bet))
    top_tenth = sum(n for _, n in bets.most_common(len(build_world(1).players) // 10))
    assert top_tenth > 0.4 * sum(bets.values())


def test_every_setup_wave_depends_only_on_earlier_waves() -> None:
    world = build_world(1, Shape(operators=3, agents_per_operator=3, players_per_agent=4))
    created: set[str] = set()
    for wave in world.waves:
        for command in wave:
            if isinstance(command, c.CreateAgent) and command.parent_code is not None:
                assert command.parent_code in created
            elif isinstance(command, c.TransferPoints):
                assert {command.agent_code, command.to_agent_code} <= created
            elif not isinstance(command, c.CreateAgent):
                assert command.agent_code in created or command.agent_code == world.broker
        created |= {x.agent_code for x in wave if isinstance(x, c.CreateAgent)}


def test_wire_messages_decode_into_the_same_commands() -> None:
    for command in stream(1, 2_000):
        wire = orjson.dumps(to_wire(command, timestamp_ms=1_700_000_000_000))
        decoded = decode(wire, [("X-MGP-REQ-ID", command.request_id.encode())])
        assert decoded == dataclasses.replace(command, timestamp_ms=1_700_000_000_000)


@pytest.mark.parametrize("seed", [1, 5])
def test_a_simulated_stream_is_refused_only_where_it_means_to_be(seed: int) -> None:
    world = build_world(seed)
    ledger = Ledger()
    for wave in world.waves:
        assert all(r.code == 0 for r in ledger.handle_batch(wave))
    user_codes = planned_codes(world)
    assert all(r.code == 0 for r in ledger.handle_batch(deposits(world, user_codes)))
    commands = list(itertools.islice(play(world, user_codes, seed), 5_000))
    answers = Counter(
        (r.status, r.duplicate)
        for start in range(0, len(commands), 1_000)
        for r in ledger.handle_batch(commands[start : start + 1_000])
    )
    assert set(answers) <= {
        ("OK", False),
        ("OK", True),  # a repeated requestId
        ("TRANSACTION_NOT_FOUND", False),  # a refund ahead of its bet
        ("TRANSACTION_NOT_FOUND", True),
        ("TRANSACTION_ROLLED_BACK", False),  # the bet it overtook
        ("TRANSACTION_ROLLED_BACK", True),
    }
    assert answers[("OK", False)] > 0.97 * len(commands)
