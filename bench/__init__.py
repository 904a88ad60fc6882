"""Workload simulation (`ledger simulate`) and the end-to-end benchmarks (`make bench`).

Not part of the ledger: nothing in `ledger/`, `consumers/` or `projections/` imports it.
"""

__all__: list[str] = []
