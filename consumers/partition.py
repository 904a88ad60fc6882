"""Which partition of `ledger.results` a result goes to, as Kafka's default partitioner says.

Kafka's Java client and aiokafka's `DefaultPartitioner` send a record with a key to
`all_partitions[toPositive(murmur2(key)) % len(all_partitions)]`. aiokafka computes
murmur2 one byte at a time in Python, which cost ~5 µs per result on the event loop;
`murmur2` here takes the same hash four bytes at a time (a little-endian word is exactly
the sum of the four shifted bytes the reference adds up), and `partition_of` applies
the same selection. tests/unit/test_edge_fast_paths.py checks both against aiokafka's own on
many random keys and partition counts.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

__all__ = ["murmur2", "partition_of"]

_SEED = 0x9747B28C
_MIX = 0x5BD1E995  # Murmur2's multiplier 'm'
_MASK_32 = 0xFFFFFFFF
_POSITIVE_31 = 0x7FFFFFFF  # Kafka's toPositive: clear the sign bit
_WORD = struct.Struct("<I")


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of `data` (Utils.murmur2), as an unsigned int: equal to
    `aiokafka.partitioner.murmur2(data)` for every input."""
    length = len(data)
    whole = length & ~3
    h = _SEED ^ length
    for (k,) in _WORD.iter_unpack(data[:whole]):
        k = (k * _MIX) & _MASK_32
        h = ((h * _MIX) & _MASK_32) ^ (((k ^ (k >> 24)) * _MIX) & _MASK_32)
    tail = length & 3
    if tail:
        if tail == 3:
            h ^= data[whole + 2] << 16
        if tail >= 2:
            h ^= data[whole + 1] << 8
        h = ((h ^ data[whole]) * _MIX) & _MASK_32
    h ^= h >> 13
    h = (h * _MIX) & _MASK_32
    return h ^ (h >> 15)


def partition_of(key: bytes, all_partitions: Sequence[int]) -> int:
    """The partition aiokafka's DefaultPartitioner picks for a record with this key,
    given the same `all_partitions` (the topic's partitions, as it lists them)."""
    return all_partitions[(murmur2(key) & _POSITIVE_31) % len(all_partitions)]
