"""Every bound of the read side in one place, asserted against each other at import.

The core's bounds live in `ledger/bounds.py`; these are the read side's own.
"""

from __future__ import annotations

__all__ = [
    "API_POOL_WAIT_SECONDS",
    "ASOF_EPOCH_MS_MIN",
    "AUDIT_VIEWS_POLL_SECONDS",
    "AUDIT_VIEWS_WAIT_SECONDS",
    "AUTHORIZATION_CHARS_MAX",
    "GGR_DAYS_MAX",
    "IN_FLIGHT_PER_AGENT_MAX",
    "LISTEN_WAIT_SECONDS",
    "PAGE_INTERVAL_SECONDS",
    "PAGE_ITEMS_DEFAULT",
    "PAGE_ITEMS_MAX",
    "PAGE_PACED_EVENTS_MIN",
    "POSITION_POLL_SECONDS",
    "PROJECTOR_BACKOFF_SECONDS_MAX",
    "REPLAY_SWAP_ATTEMPTS_MAX",
    "REPLAY_SWAP_BACKOFF_SECONDS",
    "REPLAY_SWAP_LOCK_TIMEOUT_MS",
    "REQUEST_ID_CHARS_MAX",
    "RETRY_AFTER_SECONDS",
    "STATEMENT_ENTRIES_MAX",
    "TOKEN_SECRET_BYTES",
]

# Requests of one agent (the token's) in flight in one API process; the next is
# answered SERVER_IS_BUSY at once (contract section 6).
IN_FLIGHT_PER_AGENT_MAX = 50

# Cursor pages: `limit` defaults to this and may not exceed the maximum.
PAGE_ITEMS_DEFAULT = 100
PAGE_ITEMS_MAX = 2000

# Days of daily GGR one request may return.
GGR_DAYS_MAX = 3660

# `asOf` values at or above this are epoch milliseconds (2001-09-09T01:46:40Z);
# below it they are sequences. A ledger would need a trillion events to be misread.
ASOF_EPOCH_MS_MIN = 10**12

# How often the API re-reads the projection's position while a request waits
# for a `minSequence`.
POSITION_POLL_SECONDS = 0.01

# Answers 503 carry `Retry-After` with this many seconds.
RETRY_AFTER_SECONDS = 1

# The projector waits this long for a NOTIFY from the store before it looks
# for new events anyway (a notification can be missed across a reconnect).
LISTEN_WAIT_SECONDS = 0.5

# After a page of at least PAGE_PACED_EVENTS_MIN events (the store is busy), the
# projector's next page starts at least PAGE_INTERVAL_SECONDS after it, so that each
# page writes the rows it touches once per interval (`projections/views.py::PagePacer`).
# Smaller pages are followed at once.
PAGE_INTERVAL_SECONDS = 0.2
PAGE_PACED_EVENTS_MIN = 100

# After a database error the projector retries with an exponential backoff up to this.
PROJECTOR_BACKOFF_SECONDS_MAX = 10.0

# API tokens are this many random bytes (256 bits), stored only as SHA-256.
TOKEN_SECRET_BYTES = 32

# An Authorization header longer than this is refused before any lookup.
AUTHORIZATION_CHARS_MAX = 256

# A caller's X-MGP-REQ-ID is echoed when it is at most this long and printable.
REQUEST_ID_CHARS_MAX = 128

# An API request waits at most this long for one of the pool's connections (then 503).
API_POOL_WAIT_SECONDS = 5.0

# `ledger replay` swaps the rebuilt views in with one transaction that waits at most
# this long for the live views' locks; readers queue behind it meanwhile, holding
# their pool connections, so it must give up well before they would time out. A swap
# that gave up is retried after a pause, at most this many times.
REPLAY_SWAP_LOCK_TIMEOUT_MS = 2000
REPLAY_SWAP_BACKOFF_SECONDS = 0.5
REPLAY_SWAP_ATTEMPTS_MAX = 10

# `ledger audit verify` waits at most this long for the views to reach the last
# sequence it verified (a running projector gets there), looking this often.
AUDIT_VIEWS_WAIT_SECONDS = 5.0
AUDIT_VIEWS_POLL_SECONDS = 0.2

# `ledger statement` refuses a range holding more entries than this: narrow it.
STATEMENT_ENTRIES_MAX = 1_000_000

assert PAGE_ITEMS_DEFAULT <= PAGE_ITEMS_MAX
assert REPLAY_SWAP_LOCK_TIMEOUT_MS / 1000 < API_POOL_WAIT_SECONDS
assert AUDIT_VIEWS_POLL_SECONDS < AUDIT_VIEWS_WAIT_SECONDS
assert IN_FLIGHT_PER_AGENT_MAX >= 1
assert POSITION_POLL_SECONDS < RETRY_AFTER_SECONDS
assert len("Bearer ") + 2 * TOKEN_SECRET_BYTES < AUTHORIZATION_CHARS_MAX
