"""CPU per command of the Kafka edge (consumers/), before and after its fast paths.

    python -m bench.edge [commands]

Takes a realistic workload (bench/simulate.py play, answered by an in-memory ledger),
and times, in CPU seconds of this process (time.process_time: robust on a shared
machine), each step the edge runs on the event loop for one command: FastStream's
batch parse, decoding, encoding the result, and queueing it on the producer (the
partitioner included). "before" runs the implementations the edge used to have
(restated here), "after" the ones it has. The producer is real but never started:
its metadata is filled in by hand and its queued batches are dropped after each round,
so no broker is needed and nothing is sent. Each figure is the best of ROUNDS rounds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, PartitionMetadata
from faststream.kafka.message import KafkaAckableMessage
from faststream.kafka.parser import AioKafkaBatchParser

from bench.simulate import Player, build_world, deposits, play, to_wire
from consumers.app import _parse_without_headers, _send_results
from consumers.decode import REQUEST_ID_HEADER, decode, encode_result, result_message
from consumers.partition import murmur2
from ledger import commands as c
from ledger.application import Ledger
from ledger.results import Result

__all__ = ["main"]

COMMANDS_DEFAULT = 5_000
CONSUMER_BATCH_RECORDS = 1_000  # consumers.app.BATCH_RECORDS_MAX
ROUNDS = 5
SEED = 11
PARTITIONS = 8  # bench/run.py's topics
TOPIC = "ledger.results"
TIMESTAMP_MS = 1_700_000_000_000
# Large enough that one round's results fit one batch per partition: nothing drains
# the accumulator, and a full batch would wait for that forever.
PRODUCER_BATCH_BYTES_MAX = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Workload:
    records: list[ConsumerRecord[bytes, bytes]]
    results: list[Result]


def workload(count: int) -> Workload:
    """`count` played commands as consumed records (key agentCode, the request id
    header), and their results from an in-memory ledger that ran the world's setup."""
    world = build_world(SEED)
    ledger = Ledger()
    user_codes: dict[Player, int] = {}
    for wave in world.waves:
        for command, result in zip(wave, ledger.handle_batch(wave), strict=True):
            if isinstance(command, c.CreateUser) and result.user_code is not None:
                transfer = command.agent_code in world.transfer_agents
                user_codes[Player(command.agent_code, command.name, transfer)] = result.user_code
    ledger.handle_batch(deposits(world, user_codes))
    commands = list(itertools.islice(play(world, user_codes, SEED), count))
    records = [_record(n, command) for n, command in enumerate(commands)]
    results: list[Result] = []
    for start in range(0, count, CONSUMER_BATCH_RECORDS):
        results.extend(ledger.handle_batch(commands[start : start + CONSUMER_BATCH_RECORDS]))
    return Workload(records, results)


def _record(offset: int, command: c.Command) -> ConsumerRecord[bytes, bytes]:
    value = orjson.dumps(to_wire(command, TIMESTAMP_MS))
    key = command.agent_code.encode()
    headers = [(REQUEST_ID_HEADER, command.request_id.encode())]
    size = (len(key), len(value))
    return ConsumerRecord(
        "ledger.commands", 0, offset, TIMESTAMP_MS, 0, key, value, None, *size, headers
    )


def _cpu_seconds_best(step: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        step()
        best = min(best, time.process_time() - started)
    return best


# ------------------------------------------------------------------ the steps


def _batches(records: list[Any]) -> list[tuple[Any, ...]]:
    return [
        tuple(records[n : n + CONSUMER_BATCH_RECORDS])
        for n in range(0, len(records), CONSUMER_BATCH_RECORDS)
    ]


def parse_step(records: list[Any], after: bool) -> Callable[[], Any]:
    parser = AioKafkaBatchParser(msg_class=KafkaAckableMessage, regex=None)
    batches = _batches(records)

    async def before(batch: tuple[Any, ...]) -> Any:
        bare = tuple(dataclasses.replace(record, headers=[]) for record in batch)
        return await parser.parse_batch(bare)

    async def now(batch: tuple[Any, ...]) -> Any:
        return await _parse_without_headers(batch, parser.parse_batch)

    parse = now if after else before

    async def run() -> None:
        for batch in batches:
            await parse(batch)

    return lambda: asyncio.run(run())


def decode_step(records: list[Any]) -> Callable[[], Any]:
    return lambda: [decode(record.value, list(record.headers or ())) for record in records]


def encode_step(results: list[Result], after: bool) -> Callable[[], Any]:
    if after:
        return lambda: [encode_result(result) for result in results]
    return lambda: [result_message(result).to_json() for result in results]


def partition_step(results: list[Result], after: bool) -> Callable[[], Any]:
    from aiokafka.partitioner import murmur2 as murmur2_before

    keys = [result.request_id.encode() for result in results]
    hash_of = murmur2 if after else murmur2_before
    return lambda: [hash_of(key) for key in keys]


def send_step(results: list[Result], after: bool) -> Callable[[], Any]:
    """Queue every result on a never-started producer (the encoding included)."""

    async def before(producer: AIOKafkaProducer, chunk: list[Result]) -> None:
        for result in chunk:
            value = result_message(result).to_json()
            await producer.send(TOPIC, value, key=result.request_id.encode())

    async def now(producer: AIOKafkaProducer, chunk: list[Result]) -> None:
        await _send_results(producer, TOPIC, chunk)

    return lambda: asyncio.run(_queue_all(now if after else before, results))


async def _queue_all(
    queue: Callable[[AIOKafkaProducer, list[Result]], Awaitable[None]], results: list[Result]
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers="127.0.0.1:9",  # never contacted: the producer is not started
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=PRODUCER_BATCH_BYTES_MAX,
    )
    producer.client.cluster._partitions[TOPIC] = {
        p: PartitionMetadata(TOPIC, p, 0, [0], [0], []) for p in range(PARTITIONS)
    }
    for start in range(0, len(results), CONSUMER_BATCH_RECORDS):
        await queue(producer, results[start : start + CONSUMER_BATCH_RECORDS])
        producer._message_accumulator._batches.clear()  # as if the sender took them
    producer._closed = True  # it never opened a connection: nothing to stop


# ------------------------------------------------------------------ report


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    count = int(args[0]) if args else COMMANDS_DEFAULT
    work = workload(count)
    steps: list[tuple[str, Callable[[bool], Callable[[], Any]]]] = [
        ("parse (FastStream batch)", lambda after: parse_step(work.records, after)),
        ("decode", lambda after: decode_step(work.records)),
        ("encode result", lambda after: encode_step(work.results, after)),
        ("murmur2 of the key", lambda after: partition_step(work.results, after)),
        ("encode + queue result", lambda after: send_step(work.results, after)),
    ]
    print(f"{count} commands, best of {ROUNDS} rounds, CPU µs per command")
    print(f"{'step':<26}{'before':>9}{'after':>9}")
    totals = [0.0, 0.0]
    for name, step in steps:
        figures = [_cpu_seconds_best(step(after)) / count * 1e6 for after in (False, True)]
        print(f"{name:<26}{figures[0]:>9.2f}{figures[1]:>9.2f}")
        if name not in ("encode result", "murmur2 of the key"):  # inside "queue"
            totals = [t + f for t, f in zip(totals, figures, strict=True)]
    print(f"{'edge total':<26}{totals[0]:>9.2f}{totals[1]:>9.2f}")


if __name__ == "__main__":
    main()
