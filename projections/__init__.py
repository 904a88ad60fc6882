"""The read side: views built from the event log, exactly once, and the HTTP query API.

- `views`     the projector (`Projector`): view tables and their tracking position
- `api`       the FastAPI app (`create_app`), reading through `queries`
- `security`  tokens, IP allow lists and the in-flight limit (the `Gate` middleware)
- `cli`       `ledger project | serve | tokens | agents`, and `ReadSide` for `ledger run`
- `replay`    rebuild the views beside the live ones and swap them in atomically
- `statements` point-in-time balances and account statements (`AuditReads`)
- `reconcile` the views against the balances `ledger audit verify` recomputed
- `audit_cli` `ledger replay | balance | statement` and the views' part of `audit verify`
"""

from projections.api import create_app
from projections.views import ProjectionError, Projector

__all__ = ["ProjectionError", "Projector", "create_app"]
