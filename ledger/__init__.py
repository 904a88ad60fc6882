"""The ledger core: money, accounts and postings, the contract's rules, the event-sourced
application and its store. Knows nothing of Kafka or HTTP."""

from ledger.application import Ledger
from ledger.errors import Code, LedgerError
from ledger.results import Result

__all__ = ["Code", "Ledger", "LedgerError", "Result"]
