"""Core commands as the JSON objects a platform would put on `ledger.commands`."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ledger.commands import Command

__all__ = ["to_wire", "wire_bytes"]

_CAMEL = {
    "request_id": "requestId",
    "agent_code": "agentCode",
    "timestamp_ms": "timestampMs",
    "parent_code": "parentCode",
    "to_agent_code": "toAgentCode",
    "user_code": "userCode",
    "txn_id": "txnId",
    "round_id": "roundId",
    "game_code": "gameCode",
}


def to_wire(command: Command) -> dict[str, Any]:
    body: dict[str, Any] = {"type": command.type_name}
    for field in dataclasses.fields(command):
        value = getattr(command, field.name)
        if value is not None:
            body[_CAMEL.get(field.name, field.name)] = value
    return body


def wire_bytes(command: Command) -> bytes:
    return json.dumps(to_wire(command)).encode()
