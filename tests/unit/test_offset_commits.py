"""Offsets are committed behind the next batch: per batch, in order, never past it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka.structs import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from consumers.app import _OffsetCommits
from consumers.metrics import next_offsets


@dataclass
class Record:
    topic: str
    partition: int
    offset: int


class SlowFirstConsumer:
    """Its first commit takes longest; one of them fails, as after a rebalance."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.committed: list[dict[TopicPartition, int]] = []
        self.calls = 0
        self.fail_at = fail_at

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.calls += 1
        call = self.calls
        await asyncio.sleep(0.05 if call == 1 else 0)
        if call == self.fail_at:
            raise RuntimeError("partition no longer assigned")
        self.committed.append(offsets)


def _batch(first: int, count: int) -> tuple[Any, ...]:
    return tuple(Record("c", n % 2, first + n // 2) for n in range(count))


def test_each_batch_commits_its_own_offsets_in_order() -> None:
    async def run() -> SlowFirstConsumer:
        consumer, commits = SlowFirstConsumer(), _OffsetCommits()
        commits.behind(consumer, _batch(0, 10))  # offsets 0-4 on partitions 0 and 1
        commits.behind(consumer, _batch(5, 4))  # offsets 5-6
        await commits.drain()
        return consumer

    consumer = asyncio.run(run())
    assert consumer.committed == [
        {TopicPartition("c", 0): 5, TopicPartition("c", 1): 5},
        {TopicPartition("c", 0): 7, TopicPartition("c", 1): 7},
    ]


def test_a_failed_commit_is_logged_and_the_next_one_still_lands() -> None:
    async def run() -> SlowFirstConsumer:
        consumer, commits = SlowFirstConsumer(fail_at=1), _OffsetCommits()
        commits.behind(consumer, _batch(0, 2))
        commits.behind(consumer, _batch(1, 2))
        await commits.drain()
        return consumer

    consumer = asyncio.run(run())
    assert consumer.calls == 2
    assert consumer.committed == [{TopicPartition("c", 0): 2, TopicPartition("c", 1): 2}]


@given(
    st.lists(
        st.builds(
            Record,
            st.sampled_from(["a", "b"]),
            st.integers(min_value=0, max_value=3),
            st.integers(min_value=0, max_value=10**12),
        ),
        max_size=40,
    )
)
def test_next_offsets_is_one_past_the_highest_offset_of_each_partition(
    records: list[Record],
) -> None:
    expected: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        expected[partition] = max(expected.get(partition, 0), record.offset + 1)
    assert next_offsets(records) == expected
