"""The wire contract: pydantic models of commands, results and API bodies. Imports nothing
of ours.

This package is the only place that knows JSON field names.
"""

from schemas.api import (
    AgentData,
    BalanceData,
    ChildrenData,
    Envelope,
    ErrorEnvelope,
    GgrData,
    GgrDay,
    HealthData,
    TransactionItem,
    TransactionPage,
    UserData,
)
from schemas.commands import COMMAND_MODELS, CommandModel, JsonNumber, loads_exact
from schemas.results import ResultMessage
from schemas.statement import StatementData, StatementEntry, StatementTotal

__all__ = [
    "COMMAND_MODELS",
    "AgentData",
    "BalanceData",
    "ChildrenData",
    "CommandModel",
    "Envelope",
    "ErrorEnvelope",
    "GgrData",
    "GgrDay",
    "HealthData",
    "JsonNumber",
    "ResultMessage",
    "StatementData",
    "StatementEntry",
    "StatementTotal",
    "TransactionItem",
    "TransactionPage",
    "UserData",
    "loads_exact",
]
