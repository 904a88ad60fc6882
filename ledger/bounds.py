"""Every bound of the ledger in one place, asserted against each other at import."""

from __future__ import annotations

__all__ = [
    "AMOUNT_TEXT_CHARS_MAX",
    "BALANCE_MAX_MINOR",
    "BATCH_COMMANDS_MAX",
    "BATCH_SAVE_ATTEMPTS_MAX",
    "BOOKS_CACHED_MAX",
    "ID_CHARS_MAX",
    "NAME_CHARS_MAX",
    "REQUESTS_CACHED_MAX",
    "REQUEST_FILTER_BITS",
    "USER_CODE_FIRST",
]

# MG+ single wallet: balances are signed 64-bit minor units divided by 10,000,
# i.e. at most 922,337,203,685,477 minor units on every account.
BALANCE_MAX_MINOR = 922_337_203_685_477

# An amount's decimal text is refused past this length, before any int() parse,
# so hostile 1 MiB digit strings cost nothing. 40 chars hold any legal amount.
AMOUNT_TEXT_CHARS_MAX = 40

# Free-text names (agent display names) are cut off here.
NAME_CHARS_MAX = 200

# A txnId, roundId or gameCode has 1 to this many characters: a book keeps every txnId
# and roundId forever, and an empty one would name every sender's missing id at once.
ID_CHARS_MAX = 128

# One batch entry-point call: commands in, results out, one store transaction.
BATCH_COMMANDS_MAX = 5_000

# A batch that lost an optimistic-concurrency race reloads and retries this often.
BATCH_SAVE_ATTEMPTS_MAX = 20

# Agent books kept in memory (one per agent: balances, players, rounds, txns).
BOOKS_CACHED_MAX = 20_000

# Request outcomes remembered in memory (a platform's retries come within seconds);
# older ones are read back from the store. Every batch asks the store for the
# requestIds it does not remember anyway, so a bigger cache saves little: at 10^6 it
# held 1.2 GiB and two million objects that every full garbage collection walked
# (0.66 s pauses in the core).
REQUESTS_CACHED_MAX = 10_000

# The filter of requestIds a ledger process has met (`ledger/seen.py`): 2^26 bits,
# 8 MiB. With two probes it wrongly says "maybe met" for 0.09% of new requestIds after
# 10^6 requests, 6.6% after 10^7; each of those costs only its lookup.
REQUEST_FILTER_BITS = 1 << 26

# The first integer userCode the ledger assigns.
USER_CODE_FIRST = 1001

# A batch may touch at most two books per command (transfers), plus the global
# streams; all of them must fit in the cache at once.
assert BOOKS_CACHED_MAX >= 2 * BATCH_COMMANDS_MAX + 2
assert REQUESTS_CACHED_MAX >= BATCH_COMMANDS_MAX
assert len(str(BALANCE_MAX_MINOR)) + 2 < AMOUNT_TEXT_CHARS_MAX
