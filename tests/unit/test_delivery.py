"""What the consumer's handler takes of FastStream's message, and how a failed batch is
rewound (`consumers/app.py::_delivery`, `_rewind`)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from dataclasses import dataclass

from aiokafka.structs import TopicPartition
from faststream.kafka.message import KafkaAckableMessage
from hypothesis import given
from hypothesis import strategies as st

from consumers.app import _delivery, _rewind


@dataclass
class Record:
    topic: str
    partition: int
    offset: int


class SeekingConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[TopicPartition, int]] = []

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))


def test_a_decoded_batch_leaves_no_cycle_behind() -> None:
    """FastStream keeps the decoder's result on the message: were it the message itself,
    every batch (its records too) would be freed only by the cyclic collector."""
    consumer = SeekingConsumer()
    records = (Record("c", 0, 7), Record("c", 1, 3))
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        message = KafkaAckableMessage(raw_message=records, body=b"", consumer=consumer)
        message.set_decoder(_delivery)
        delivery = asyncio.run(message.decode())
        assert (delivery.consumer, delivery.records) == (consumer, records)
        assert asyncio.run(message.decode()) is delivery  # FastStream's cache
        gone = weakref.ref(message)
        del message
        assert gone() is None  # freed by reference counting alone
    finally:
        if was_enabled:
            gc.enable()


def test_a_single_record_is_delivered_as_a_batch_of_one() -> None:
    message = KafkaAckableMessage(
        raw_message=Record("c", 0, 1), body=b"", consumer=SeekingConsumer()
    )
    message.set_decoder(_delivery)
    assert asyncio.run(message.decode()).records == (Record("c", 0, 1),)


@given(
    st.lists(
        st.tuples(st.sampled_from(("a", "b")), st.integers(0, 3), st.integers(0, 10**6)),
        min_size=1,
        max_size=60,
    )
)
def test_a_rewind_seeks_every_partition_of_the_batch_to_its_earliest_record(
    rows: list[tuple[str, int, int]],
) -> None:
    consumer = SeekingConsumer()
    _rewind(consumer, tuple(Record(topic, partition, offset) for topic, partition, offset in rows))
    earliest: dict[TopicPartition, int] = {}
    for topic, partition, offset in rows:
        key = TopicPartition(topic, partition)
        earliest[key] = min(offset, earliest.get(key, offset))
    assert dict(consumer.seeks) == earliest
    assert len(consumer.seeks) == len(earliest)  # one seek per partition
