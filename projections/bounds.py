"""Every bound of the read side in one place, asserted against each other at import.

The core's bounds live in `ledger/bounds.py`; these are the read side's own.
"""

from __future__ import annotations

__all__ = [
    "ASOF_EPOCH_MS_MIN",
    "AUTHORIZATION_CHARS_MAX",
    "GGR_DAYS_MAX",
    "IN_FLIGHT_PER_AGENT_MAX",
    "LISTEN_WAIT_SECONDS",
    "PAGE_ITEMS_DEFAULT",
    "PAGE_ITEMS_MAX",
    "POSITION_POLL_SECONDS",
    "PROJECTOR_BACKOFF_SECONDS_MAX",
    "REQUEST_ID_CHARS_MAX",
    "RETRY_AFTER_SECONDS",
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

# After a database error the projector retries with an exponential backoff up to this.
PROJECTOR_BACKOFF_SECONDS_MAX = 10.0

# API tokens are this many random bytes (256 bits), stored only as SHA-256.
TOKEN_SECRET_BYTES = 32

# An Authorization header longer than this is refused before any lookup.
AUTHORIZATION_CHARS_MAX = 256

# A caller's X-MGP-REQ-ID is echoed when it is at most this long and printable.
REQUEST_ID_CHARS_MAX = 128

assert PAGE_ITEMS_DEFAULT <= PAGE_ITEMS_MAX
assert IN_FLIGHT_PER_AGENT_MAX >= 1
assert POSITION_POLL_SECONDS < RETRY_AFTER_SECONDS
assert len("Bearer ") + 2 * TOKEN_SECRET_BYTES < AUTHORIZATION_CHARS_MAX
