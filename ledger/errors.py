"""Contract error codes and the ledger's one exception hierarchy.

    LedgerError                      a command is refused; carries its contract code
    ├── ValidationError              1002  missing or ill-typed field
    ├── PermissionError_             1010  wrong mode, not parent/child, foreign user, non-root
    ├── ParametersInvalid            1012  bad amount, bad name, header/body mismatch
    ├── AgentNotFound                2001
    ├── UserNotFound                 2002
    ├── PointNotEnough               2005  an agent's points would go below zero
    ├── BalanceNotEnough             2006  a player's balance would go below zero
    ├── CurrencyNotSupported         2014
    ├── IdempotencyConflict          3001
    ├── DuplicateTransaction         3002
    ├── TransactionNotFound          3003
    ├── TransactionRolledBack        3004
    ├── RoundClosed                  3005
    ├── BalanceLimitExceeded         3006
    └── AgentExists                  3007

Expected business failures are these typed errors; programmer errors are assertions.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "AgentExists",
    "AgentNotFound",
    "BalanceLimitExceeded",
    "BalanceNotEnough",
    "Code",
    "CurrencyNotSupported",
    "DuplicateTransaction",
    "IdempotencyConflict",
    "LedgerError",
    "ParametersInvalid",
    "PermissionError_",
    "PointNotEnough",
    "RoundClosed",
    "TransactionNotFound",
    "TransactionRolledBack",
    "UserNotFound",
    "ValidationError",
]


class Code(IntEnum):
    """Every code of contract section 5; the member name is the wire `status`."""

    OK = 0
    INTERNAL_SERVER_ERROR = 1001
    VALIDATION_ERROR = 1002
    TOKEN_NOT_FOUND = 1007
    TOKEN_INVALID = 1009
    PERMISSION_ERROR = 1010
    PARAMETERS_INVALID = 1012
    SERVER_IS_BUSY = 1018
    IP_NOT_ALLOWED = 1020
    AGENT_NOT_FOUND = 2001
    USER_NOT_FOUND = 2002
    POINT_NOT_ENOUGH = 2005
    BALANCE_NOT_ENOUGH = 2006
    CURRENCY_NOT_SUPPORTED = 2014
    IDEMPOTENCY_CONFLICT = 3001
    DUPLICATE_TRANSACTION = 3002
    TRANSACTION_NOT_FOUND = 3003
    TRANSACTION_ROLLED_BACK = 3004
    ROUND_CLOSED = 3005
    BALANCE_LIMIT_EXCEEDED = 3006
    AGENT_EXISTS = 3007


class LedgerError(Exception):
    """A command the ledger refuses; nothing was changed."""

    code: Code = Code.INTERNAL_SERVER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(LedgerError):
    code = Code.VALIDATION_ERROR


class PermissionError_(LedgerError):
    code = Code.PERMISSION_ERROR


class ParametersInvalid(LedgerError):
    code = Code.PARAMETERS_INVALID


class AgentNotFound(LedgerError):
    code = Code.AGENT_NOT_FOUND


class UserNotFound(LedgerError):
    code = Code.USER_NOT_FOUND


class PointNotEnough(LedgerError):
    code = Code.POINT_NOT_ENOUGH


class BalanceNotEnough(LedgerError):
    code = Code.BALANCE_NOT_ENOUGH


class CurrencyNotSupported(LedgerError):
    code = Code.CURRENCY_NOT_SUPPORTED


class IdempotencyConflict(LedgerError):
    code = Code.IDEMPOTENCY_CONFLICT


class DuplicateTransaction(LedgerError):
    code = Code.DUPLICATE_TRANSACTION


class TransactionNotFound(LedgerError):
    code = Code.TRANSACTION_NOT_FOUND


class TransactionRolledBack(LedgerError):
    code = Code.TRANSACTION_ROLLED_BACK


class RoundClosed(LedgerError):
    code = Code.ROUND_CLOSED


class BalanceLimitExceeded(LedgerError):
    code = Code.BALANCE_LIMIT_EXCEEDED


class AgentExists(LedgerError):
    code = Code.AGENT_EXISTS
