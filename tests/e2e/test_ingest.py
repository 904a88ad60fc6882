"""Kafka ingest under replay, crashes, scale-out and poison (issue 4), over real services."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger.application import Ledger
from ledger.commands import Command, CreateAgent, CreateUser, Deposit, TransferPoints
from ledger.results import Result
from ledger.settings import store_env
from tests.bench.workload import World, casino_play, casino_world, world_as_built
from tests.e2e.harness import Stack, produce, read_all, results_by_request
from tests.wire import wire_bytes

RESULTS_SECONDS_MAX = 180


@pytest.fixture
def stack(
    kafka_bootstrap: str, database_url: str, pg_schema: str, tmp_path: Path
) -> Iterator[Stack]:
    built = Stack(kafka_bootstrap, database_url, pg_schema, tmp_path)
    yield built
    built.close()


def message(command: Command) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return (
        command.agent_code.encode(),
        wire_bytes(command),
        [("X-MGP-REQ-ID", command.request_id.encode())],
    )


def send(stack: Stack, commands: list[Command]) -> None:
    asyncio.run(produce(stack.bootstrap, stack.commands, [message(c) for c in commands]))


def _setup_level(command: Command) -> int:
    """Which wave of the setup a command belongs to: a command may depend on agents of
    other partitions (a parent, a transfer's receiver) only from an earlier wave."""
    if isinstance(command, CreateAgent):
        return 0 if command.parent_code is None else 1 if command.parent_code == "BROKER" else 2
    if isinstance(command, TransferPoints):
        return 2 if command.agent_code == "BROKER" else 3
    if isinstance(command, CreateUser):
        return 3
    return 4 if isinstance(command, Deposit) else 0


def send_world(stack: Stack, world: World) -> World:
    """Send the setup wave by wave, as a platform must: a child only after its parent,
    a deposit only after the createUser that told its userCode. Returns the world as
    the ledger built it: userCodes are handed out in the order the ledger saw the
    createUser commands, which Kafka's partitions may reorder."""
    setup = [c for c in world.setup if _setup_level(c) < 4]
    for level in range(4):
        wave = [c for c in setup if _setup_level(c) == level]
        send(stack, wave)
        answers = results_for(stack, {c.request_id for c in wave})
        assert [answers[c.request_id][0]["code"] for c in wave] == [0] * len(wave)
    # casino_world lists its players in the order of their createUser commands.
    creations = [c for c in setup if isinstance(c, CreateUser)]
    answers = results_for(stack, {c.request_id for c in creations})
    code_of = {
        planned: answers[command.request_id][0]["userCode"]
        for command, planned in zip(creations, world.players, strict=True)
    }
    deposits = [
        replace(c, user_code=code_of[(c.agent_code, c.user_code)])
        for c in world.setup
        if isinstance(c, Deposit)
    ]
    send(stack, deposits)
    answers = results_for(stack, {c.request_id for c in deposits})
    assert [answers[c.request_id][0]["code"] for c in deposits] == [0] * len(deposits)
    return world_as_built(world, code_of, deposits)


def results_for(
    stack: Stack, request_ids: set[str], topic: str | None = None, answers: int | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Read results until every requestId has one (and `answers` results arrived)."""

    def done(records: list[Any]) -> bool:
        if answers is not None and len(records) < answers:
            return False
        seen = {json.loads(r.value)["requestId"] for r in records}
        return request_ids <= seen

    records = asyncio.run(
        read_all(stack.bootstrap, topic or stack.results, done, RESULTS_SECONDS_MAX)
    )
    grouped = results_by_request(records)
    missing = request_ids - set(grouped)
    assert not missing, f"{len(missing)} commands have no result"
    return grouped


def reference(commands: list[Command]) -> tuple[Ledger, dict[str, Result]]:
    """The same commands through an in-memory ledger, in one order that respects
    every agent's own order: what a single instance must end with."""
    ledger = Ledger()
    answers: dict[str, Result] = {}
    for start in range(0, len(commands), 500):
        for result in ledger.handle_batch(commands[start : start + 500]):
            answers.setdefault(result.request_id, result)
    return ledger, answers


def assert_books_equal(stack: Stack, expected: Ledger, world: World) -> None:
    actual = Ledger(store_env(stack.database_url, stack.schema))
    try:
        for code in ["BROKER", *set(world.casinos.values()), *world.casinos]:
            mine, theirs = actual.book(code), expected.book(code)
            assert mine is not None and theirs is not None
            assert (mine.points_minor, mine.house_minor) == (
                theirs.points_minor,
                theirs.house_minor,
            ), code
            assert {k: v[1] for k, v in mine.players.items()} == {
                k: v[1] for k, v in theirs.players.items()
            }, code
    finally:
        actual.close()


def assert_no_request_applied_twice(stack: Stack) -> None:
    """Every primary book event's requestId occurs once (PointsReceived and the
    issuance/directory events are the secondary events of a command)."""
    with psycopg.connect(stack.database_url) as conn:
        rows = conn.execute(
            f"""SELECT convert_from(state, 'UTF8')::jsonb->>'request_id' AS r, count(*)
                FROM "{stack.schema}".ledger_events
                WHERE topic LIKE 'ledger.book:AgentBook.%' AND topic NOT LIKE '%PointsReceived'
                GROUP BY r HAVING count(*) > 1"""
        ).fetchall()
    assert rows == []


def same_answer(wire: dict[str, Any], expected: Result, exact_order: bool = True) -> bool:
    """The wire result says what the reference said. Without `exact_order`, the agent's
    points and the event id (its book version) may differ: they depend on how the
    agent's commands interleave with transfers from other partitions."""

    def text(minor: int | None, digits: int = 2) -> str | None:
        return None if minor is None else f"{minor / 10**digits:.{digits}f}"

    return (
        wire["code"] == expected.code
        and wire.get("balance") == text(expected.balance_minor)
        and (not exact_order or wire.get("agentBalance") == text(expected.agent_balance_minor))
        and (not exact_order or wire.get("eventId") == expected.event_id)
    )


def test_a_second_group_replaying_the_topic_appends_nothing_and_answers_the_same(
    stack: Stack,
) -> None:
    first = stack.service()
    first.start()
    world = send_world(stack, casino_world(casinos=4, players_per_casino=5))
    play = casino_play(world, 600)
    repeats = random.Random(3).sample(play, 20)  # redeliveries and retries of the same requests
    commands = [*world.setup, *play, *repeats]
    send(stack, [*play, *repeats])
    ids = {c.request_id for c in commands}
    original = results_for(stack, ids, answers=len(commands))
    first.stop()
    with psycopg.connect(stack.database_url) as conn:
        events_before = conn.execute(
            f'SELECT max(notification_id) FROM "{stack.schema}".ledger_events'
        ).fetchone()

    replay_topic = f"{stack.results}.replay"
    stack.create_topic(replay_topic)
    replayer = stack.service(group="replay", results=replay_topic)
    replayer.start()
    replayed = results_for(stack, ids, topic=replay_topic, answers=len(commands))
    replayer.stop()
    with psycopg.connect(stack.database_url) as conn:
        events_after = conn.execute(
            f'SELECT max(notification_id) FROM "{stack.schema}".ledger_events'
        ).fetchone()

    assert events_after == events_before

    def comparable(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in r.items() if k not in ("duplicate", "processedAtMs")} for r in results
        ]

    assert {k: comparable(v) for k, v in replayed.items()} == {
        k: comparable(v) for k, v in original.items()
    }
    assert all(r["duplicate"] for answers in replayed.values() for r in answers)


def test_killing_the_service_repeatedly_loses_nothing_and_applies_nothing_twice(
    stack: Stack,
) -> None:
    service = stack.service()
    service.start()
    world = send_world(stack, casino_world(casinos=8, players_per_casino=10))
    play = casino_play(world, 12_000)

    send(stack, play)
    rng = random.Random(5)
    kills = 0
    for _ in range(5):
        time.sleep(rng.uniform(0.2, 0.9))
        service.kill()
        kills += 1
        service.start()
    answers = results_for(stack, {c.request_id for c in play})
    service.stop()

    expected_ledger, expected = reference([*world.setup, *play])
    assert kills == 5
    for request_id, wires in ((c.request_id, answers[c.request_id]) for c in play):
        assert all(same_answer(w, expected[request_id]) for w in wires), (
            wires,
            expected[request_id],
        )
        assert (
            len(
                {
                    json.dumps(
                        {k: v for k, v in w.items() if k not in ("duplicate", "processedAtMs")},
                        sort_keys=True,
                    )
                    for w in wires
                }
            )
            == 1
        )
    assert_books_equal(stack, expected_ledger, world)
    assert_no_request_applied_twice(stack)


def test_two_instances_with_one_restarted_mid_run_end_like_a_single_instance(
    stack: Stack,
) -> None:
    first, second = stack.service(), stack.service()
    first.start()
    second.start()
    world = send_world(stack, casino_world(casinos=8, players_per_casino=10))
    play = casino_play(world, 8_000, transfers=True)

    send(stack, play)
    time.sleep(0.5)
    second.stop()
    time.sleep(0.5)
    second.start()
    answers = results_for(stack, {c.request_id for c in play})

    expected_ledger, expected = reference([*world.setup, *play])
    # A casino's points depend on how its commands interleave with transfers into it
    # from its operator (another partition), so they are compared at the end only.
    for request_id, wires in ((c.request_id, answers[c.request_id]) for c in play):
        assert all(same_answer(w, expected[request_id], exact_order=False) for w in wires)
    assert_books_equal(stack, expected_ledger, world)
    assert_no_request_applied_twice(stack)


POISON = [
    b"{not json",
    b"[1, 2, 3]",
    b'"a string"',
    b"",
    b"\xff\xfe\x00invalid utf-8",
    b'{"type": "bet", "agentCode": "CASINO0"}',
    b'{"type": "bet", "requestId": "not-a-uuid", "agentCode": "CASINO0"}',
    b'{"type": "bet", "requestId": 12345}',
    b"[" * 10_000 + b"]" * 10_000,
]


def test_a_thousand_malformed_messages_go_to_the_dlq_and_every_valid_one_is_answered(
    stack: Stack,
) -> None:
    service = stack.service()
    service.start()
    world = send_world(stack, casino_world(casinos=4, players_per_casino=5))
    play = casino_play(world, 2_000)
    rng = random.Random(9)
    poison = [rng.choice(POISON) for _ in range(1_000)]
    valid = [message(c) for c in play]
    mixed: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    for n, item in enumerate(valid):
        mixed.append(item)
        if n % 2 == 0 and poison:
            mixed.append((b"CASINO0", poison.pop(), []))
    mixed.extend((b"CASINO1", p, []) for p in poison)
    asyncio.run(produce(stack.bootstrap, stack.commands, mixed))

    answers = results_for(stack, {c.request_id for c in [*world.setup, *play]})
    dead = asyncio.run(
        read_all(stack.bootstrap, stack.dlq, lambda r: len(r) >= 1_000, RESULTS_SECONDS_MAX)
    )
    service.stop()

    assert len(dead) == 1_000
    # Valid commands carry the X-MGP-REQ-ID header; the poison carries none.
    assert sorted(r.value or b"" for r in dead) == sorted(m[1] for m in mixed if not m[2])
    assert all(dict(r.headers).get("x-dlq-reason") for r in dead)
    assert len(answers) == len(world.setup) + len(play)
    _, expected = reference([*world.setup, *play])
    assert all(same_answer(answers[c.request_id][0], expected[c.request_id]) for c in play)
