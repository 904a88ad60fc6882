"""The FastStream application of topic `ledger.commands`.

Delivery: consume a batch -> decode -> `Ledger.handle_batch` (one store
transaction) -> publish every result and dead letter, awaiting the broker's
acknowledgements -> commit the offsets (AckPolicy.MANUAL). A crash anywhere
in between redelivers the batch; the ledger answers each redelivered command
from its request log with the original result (`duplicate: true`), so
results are at-least-once with stable content and consumers dedupe by
requestId. An infrastructure error (PostgreSQL down) rewinds the batch and
retries after a bounded backoff without committing past it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from consumers.decode import DeadLetter, decode, encode_result
from ledger.application import Ledger
from ledger.commands import Command
from ledger.settings import Settings

__all__ = ["BATCH_RECORDS_MAX", "build_app"]

log = logging.getLogger("ledger.consumer")

BATCH_RECORDS_MAX = 1_000
BATCH_TIMEOUT_MS = 20
RETRY_BACKOFF_SECONDS_MAX = 10.0


def build_app(settings: Settings, ledger: Ledger) -> FastStream:
    broker = KafkaBroker(settings.kafka_bootstrap_servers, client_id="ledger")
    app = FastStream(broker)
    producer: dict[str, AIOKafkaProducer] = {}
    failures = 0

    @app.on_startup
    async def start_producer() -> None:
        producer["p"] = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            enable_idempotence=True,  # implies acks=all
            linger_ms=2,
            client_id="ledger-results",
        )
        await producer["p"].start()

    @app.after_startup
    async def announce() -> None:
        log.warning(
            "ledger ready: consuming %s (group %s), answering on %s",
            settings.commands_topic,
            settings.kafka_group_id,
            settings.results_topic,
        )

    @app.on_shutdown
    async def stop_producer() -> None:
        if "p" in producer:
            await producer.pop("p").stop()

    @broker.subscriber(
        settings.commands_topic,
        group_id=settings.kafka_group_id,
        batch=True,
        max_records=BATCH_RECORDS_MAX,
        batch_timeout_ms=BATCH_TIMEOUT_MS,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_commands(body: Any, msg: KafkaMessage) -> None:
        nonlocal failures
        records = msg.raw_message if isinstance(msg.raw_message, tuple) else (msg.raw_message,)
        try:
            await _process(records, ledger, producer["p"], settings)
        except Exception:
            failures += 1
            backoff = min(RETRY_BACKOFF_SECONDS_MAX, 0.1 * 2**failures)
            log.exception("batch failed; rewinding and retrying in %.1fs", backoff)
            await msg.nack()
            await asyncio.sleep(backoff)
            return
        failures = 0
        await msg.ack()

    return app


async def _process(
    records: tuple[Any, ...], ledger: Ledger, producer: AIOKafkaProducer, settings: Settings
) -> None:
    commands: list[Command] = []
    sends = []
    for record in records:
        decoded = decode(record.value, list(record.headers or ()))
        if isinstance(decoded, DeadLetter):
            headers = [
                *(record.headers or ()),
                ("x-dlq-reason", decoded.reason.encode()),
                ("x-dlq-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
            ]
            sends.append(
                await producer.send(
                    settings.dlq_topic, record.value, key=record.key, headers=headers
                )
            )
        else:
            commands.append(decoded)
    results = await asyncio.to_thread(ledger.handle_batch, commands) if commands else []
    for result in results:
        sends.append(
            await producer.send(
                settings.results_topic, encode_result(result), key=result.request_id.encode()
            )
        )
    await asyncio.gather(*sends)
