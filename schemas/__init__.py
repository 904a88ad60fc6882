"""The wire contract: pydantic models of commands and results. Imports nothing of ours.

This package is the only place that knows JSON field names.
"""

from schemas.commands import COMMAND_MODELS, CommandModel, JsonNumber, loads_exact
from schemas.results import ResultMessage

__all__ = ["COMMAND_MODELS", "CommandModel", "JsonNumber", "ResultMessage", "loads_exact"]
