"""The Kafka edge: decode commands, call the core, publish results, dead-letter the rest."""

from consumers.app import build_app
from consumers.decode import DeadLetter, decode, encode_result

__all__ = ["DeadLetter", "build_app", "decode", "encode_result"]
