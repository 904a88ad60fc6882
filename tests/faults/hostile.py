"""Hypothesis strategies for hostile Kafka messages, each knowing what must become of it.

Every generated `Hostile` carries its expectation, decided by construction:
- `dlq`:  no usable requestId (not JSON, invalid UTF-8, not an object, NaN/Infinity,
          JSON nested 10,000 deep, a requestId that is no canonical UUID, 1 MiB of junk):
          the message must go to the DLQ, unchanged;
- `edge`: a usable requestId but a message the edge must refuse with one contract code
          (missing or ill-typed field: 1002; header/body requestId mismatch, a value over
          64 KiB, NUL or an unpaired surrogate in a text field: 1012);
- `core`: a message that decodes into exactly `command` (odd-case enums, amounts as
          JSON numbers, 1e400, 25-digit integers, unicode and control characters, extra
          fields, shuffled keys): its answer is what the reference model says.

`Oracle` keeps the reference model (`tests/unit/reference_model.py`) in step with the
messages: it answers `core` messages with the model and `edge` ones as the contract says
(a refusal is remembered, so its requestId reused with another payload is 3001; a
header/body requestId mismatch is answered 1012 every time and remembered under neither).

The messages name the agents of `HOSTILE_WORLD` (and codes that do not exist), never
those of another workload, so a test can run a valid workload beside them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from ledger import commands as c
from ledger.errors import Code
from tests.unit.reference_model import CURRENCY_EXPONENTS, ModelResult, ReferenceModel

__all__ = [
    "CONTRACT_CODES",
    "HOSTILE_WORLD",
    "Hostile",
    "Oracle",
    "hostile_batches",
    "hostile_messages",
]

CONTRACT_CODES = frozenset(int(code) for code in Code)
MESSAGE_BYTES_MAX = 64 * 1024  # consumers.decode.MESSAGE_BYTES_MAX, restated: the contract
MIB = 1024 * 1024

HB, HO, HC, HS = "HB", "HO", "HC", "HS"
HOSTILE_USERS = (1001, 1002, 1003, 1004)  # HC: 1001, 1002; HS: 1003, 1004


def _rid(n: int) -> str:
    return str(uuid.UUID(int=0xF00D0000_0000_4000_8000_000000000000 + n))


HOSTILE_WORLD: tuple[c.Command, ...] = (
    c.CreateAgent(request_id=_rid(1), agent_code=HB, currency="USD", mode="transfer"),
    c.IssuePoints(request_id=_rid(2), agent_code=HB, amount="1000000000"),
    c.CreateAgent(
        request_id=_rid(3), agent_code=HO, parent_code=HB, currency="USD", mode="transfer"
    ),
    c.TransferPoints(request_id=_rid(4), agent_code=HB, to_agent_code=HO, amount="100000000"),
    c.CreateAgent(
        request_id=_rid(5), agent_code=HC, parent_code=HO, currency="USD", mode="transfer"
    ),
    c.CreateAgent(
        request_id=_rid(6), agent_code=HS, parent_code=HO, currency="USD", mode="seamless"
    ),
    c.TransferPoints(request_id=_rid(7), agent_code=HO, to_agent_code=HC, amount="10000000"),
    c.TransferPoints(request_id=_rid(8), agent_code=HO, to_agent_code=HS, amount="10000000"),
    c.CreateUser(request_id=_rid(9), agent_code=HC, name="p1"),
    c.CreateUser(request_id=_rid(10), agent_code=HC, name="p2"),
    c.CreateUser(request_id=_rid(11), agent_code=HS, name="s1"),
    c.CreateUser(request_id=_rid(12), agent_code=HS, name="s2"),
    c.Deposit(request_id=_rid(13), agent_code=HC, user_code=1001, amount="1000"),
    c.Deposit(request_id=_rid(14), agent_code=HC, user_code=1002, amount="1000"),
)


class Raw(str):
    """A JSON token written as it is: a number, a literal, or a string with escapes."""


def _token(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def encode_fields(fields: Sequence[tuple[str, Any]]) -> bytes:
    """A JSON object with exactly these members, in this order (duplicates allowed)."""
    members = ", ".join(f"{json.dumps(name)}: {_token(value)}" for name, value in fields)
    return ("{" + members + "}").encode()


@dataclass(frozen=True)
class Hostile:
    """One message and what must become of it."""

    kind: str
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    key: bytes | None = None
    expect: str = "dlq"  # dlq | edge | core
    request_id: str | None = None
    code: int = 0  # edge: the contract code
    command: c.Command | None = None  # core: what it must decode into


# ------------------------------------------------------------------ pools

AGENT_CODES = (HB, HO, HC, HC, HC, HS, HS)
ODD_AGENT_CODES = (
    "ZZ",
    "nope",
    "x",
    "hc",
    "A" * 51,
    "bad code",
    "HC\n",
    "H\u00c7",
    "\uff28\uff23",
    "HC\x1b[31m",
    "",
    "HC\u200b",
    "\u202eCH",
    "'; DROP TABLE x; --",
)
USER_CODES = st.one_of(
    st.sampled_from(HOSTILE_USERS),
    st.sampled_from((0, -1, 999, 1005, 10**25, -(10**24), 2**63, 2**64 + 1)),
    st.integers(-10, 3000),
)
GOOD_AMOUNTS = ("1", "0.5", "10.00", "0", "12.5", "100", "999.99", "0.01")
TEXT_AMOUNTS = (
    "",
    "-1",
    "-0",
    "+5",
    " 5",
    "5 ",
    "1e3",
    "1E2",
    "1e400",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "1.234",
    "0.001",
    ".5",
    "5.",
    "1,000",
    "0x10",
    "\uff11\uff12",
    "\u0661\u0662",
    "1" * 25,
    "9" * 25,
    "1" + "0" * 39,
    "1" + "0" * 40,
    "1" * 200,
    "12.5\n",
)
# JSON number tokens: (token, the amount text the core must receive).
NUMBER_AMOUNTS = (
    ("1.5", "1.5"),
    ("100", "100"),
    ("-5", "-5"),
    ("-0", "0"),
    ("1e400", "1e400"),
    ("1E2", "1E2"),
    ("-1e400", "-1e400"),
    ("0.000000000000000000001", "0.000000000000000000001"),
    ("1" * 25, "1" * 25),
    ("9" * 40, "9" * 40),
    ("1" * 45, "1" * 45),
    ("12.50", "12.50"),
    ("0", "0"),
)
TEXTS = (
    "t1",
    "t2",
    "t3",
    "r1",
    "r2",
    "",
    " ",
    "\t",
    "x" * 300,
    "\u00fcber",
    "\u540d\u524d",
    "\U0001f600",
    "\u202eRTL",
    "\x07bell",
    "a\nb",
    "</script>",
    "\\",
    '"',
)
USER_NAMES = (
    "p1",
    "alice",
    "a",
    "bad name",
    "\u00fc\u00fc\u00fc",
    "x" * 51,
    "\u540d\u524d",
    "ok_1",
    "\u202eRTL",
    "\x07bell",
    "\U0001f600\U0001f600",
    "p1\n",
)
AGENT_NAMES = (None, "Casino", "", "x" * 201, "\U0001f600" * 10, "tab\tname", "\u0085")
CURRENCIES = ("USD", "usd", "Usd", "KRW", "BHD", "XYZ", "", "\uff35\uff33\uff24", "US", "USDD")
MODES = ("transfer", "TRANSFER", "Seamless", "seamless", "hybrid", "", "transfer ")
KINDS = ("game", "GAME", "Bonus", "jackpot", "FreeSpin", "promotion", "lottery", "")
TYPES = (
    "createAgent",
    "createUser",
    "issuePoints",
    "transferPoints",
    "deposit",
    "withdraw",
    "bet",
    "bet",
    "win",
    "win",
    "refund",
)
# Wire names of the core fields (snake_case in ledger/commands.py).
WIRE_NAMES = {
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
REQUIRED = {
    "createAgent": ("agentCode", "currency", "mode"),
    "createUser": ("agentCode", "name"),
    "issuePoints": ("agentCode", "amount"),
    "transferPoints": ("agentCode", "toAgentCode", "amount"),
    "deposit": ("agentCode", "userCode", "amount"),
    "withdraw": ("agentCode", "userCode"),
    "bet": ("agentCode", "userCode", "txnId", "roundId", "amount"),
    "win": ("agentCode", "userCode", "txnId", "amount"),
    "refund": ("agentCode", "userCode", "txnId"),
}
# Fields that may be null (null is the same as absent).
NULLABLE = {"parentCode", "timestampMs", "gameCode"}
NULLABLE_BY_TYPE = {"createAgent": {"name"}, "win": {"roundId"}, "withdraw": {"amount"}}
NULLABLE_BY_TYPE["refund"] = {"amount"}
INT_FIELDS = {"userCode", "timestampMs"}
TEXT_FIELDS = {
    "agentCode",
    "parentCode",
    "toAgentCode",
    "currency",
    "mode",
    "name",
    "txnId",
    "roundId",
    "gameCode",
    "kind",
}


def _case_variants(text: str) -> st.SearchStrategy[str]:
    return st.sampled_from((text, text.upper(), text.lower(), text.swapcase(), text.title()))


def _amount() -> st.SearchStrategy[tuple[Any, str]]:
    """(wire value, core text) of an amount: decimal text, or a JSON number token."""
    text = st.sampled_from(GOOD_AMOUNTS + GOOD_AMOUNTS + TEXT_AMOUNTS).map(lambda t: (t, t))
    number = st.sampled_from(NUMBER_AMOUNTS).map(lambda p: (Raw(p[0]), p[1]))
    return st.one_of(text, number)


@dataclass
class Draft:
    """A command being built: its wire members and its core fields, kept in step."""

    type_name: str
    wire_type: str
    request_id: str
    members: dict[str, Any] = field(default_factory=dict)  # wire name -> wire value
    core: dict[str, Any] = field(default_factory=dict)  # core field -> value

    def put(self, wire: str, value: Any, core_value: Any = None) -> None:
        self.members[wire] = value
        snake = {v: k for k, v in WIRE_NAMES.items()}.get(wire, wire)
        self.core[snake] = value if core_value is None else core_value

    def command(self) -> c.Command:
        cls = {cls.type_name: cls for cls in _CORE_TYPES}[self.type_name]
        return cls(request_id=self.request_id, **self.core)


_CORE_TYPES = (
    c.CreateAgent,
    c.CreateUser,
    c.IssuePoints,
    c.TransferPoints,
    c.Deposit,
    c.Withdraw,
    c.Bet,
    c.Win,
    c.Refund,
)


@st.composite
def drafts(draw: st.DrawFn) -> Draft:
    """A well-formed command (as to its schema) with hostile values in every field."""
    type_name = draw(st.sampled_from(TYPES))
    request_id = str(draw(st.uuids()))
    if draw(st.integers(0, 9)) == 0:
        request_id = request_id.upper()  # canonical in any case: still usable
    draft = Draft(type_name, draw(_case_variants(type_name)), request_id)
    agents = st.one_of(st.sampled_from(AGENT_CODES), st.sampled_from(ODD_AGENT_CODES))
    draft.put("agentCode", draw(agents))
    if draw(st.booleans()):
        draft.put("timestampMs", draw(st.sampled_from((0, -1, 1_700_000_000_000, 10**25))))
    texts = st.sampled_from(TEXTS)
    if type_name == "createAgent":
        if draw(st.booleans()):
            draft.put("parentCode", draw(agents))
        draft.put("currency", draw(st.sampled_from(CURRENCIES)))
        draft.put("mode", draw(st.sampled_from(MODES)))
        name = draw(st.sampled_from(AGENT_NAMES))
        if name is not None:
            draft.put("name", name)
    elif type_name == "createUser":
        draft.put("name", draw(st.sampled_from(USER_NAMES)))
    elif type_name == "transferPoints":
        draft.put("toAgentCode", draw(agents))
    if type_name in ("deposit", "withdraw", "bet", "win", "refund"):
        draft.put("userCode", draw(USER_CODES))
    if type_name in ("bet", "win", "refund"):
        draft.put("txnId", draw(texts))
    if type_name == "bet" or (type_name == "win" and draw(st.booleans())):
        draft.put("roundId", draw(texts))
    if type_name == "bet" and draw(st.booleans()):
        draft.put("gameCode", draw(texts))
    if type_name == "win":
        if draw(st.booleans()):
            draft.put("kind", draw(st.sampled_from(KINDS)))
        if draw(st.booleans()):
            draft.put("completed", draw(st.booleans()))
    optional_amount = type_name in ("withdraw", "refund")
    if type_name not in ("createAgent", "createUser") and (
        not optional_amount or draw(st.booleans())
    ):
        wire, text = draw(_amount())
        draft.put("amount", wire, text)
    return draft


EXTRA_VALUES = st.sampled_from(
    (
        1,
        "x",
        None,
        [],
        {},
        Raw("1e400"),
        Raw("-0.0"),
        Raw("1" * 60),
        {"nested": [1, {"deeper": [None]}]},
        Raw("[" * 100 + "]" * 100),
        "\u0000 is fine in an ignored field",
    )
)
EXTRA_NAMES = st.sampled_from(
    ("AgentCode", "REQUESTID", "amount ", "extra", "__proto__", "type2", "\u00e9", "")
)


@st.composite
def _members(draw: st.DrawFn, draft: Draft) -> list[tuple[str, Any]]:
    """The wire members of a draft: shuffled, with ignored extra fields."""
    members: list[tuple[str, Any]] = [
        ("type", draft.wire_type),
        ("requestId", draft.request_id),
        *draft.members.items(),
    ]
    for _ in range(draw(st.integers(0, 2))):
        members.append((draw(EXTRA_NAMES), draw(EXTRA_VALUES)))
    # One draw for the order (st.permutations draws once per member: generation is the
    # cost of this suite, and no order is more interesting than another).
    random.Random(draw(st.integers(0, 2**32 - 1))).shuffle(members)
    return members


@st.composite
def _headers(draw: st.DrawFn, request_id: str) -> tuple[tuple[str, bytes | None], ...]:
    """Headers that keep the message valid: none, the right requestId (any name case),
    or unrelated ones."""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return ()
    if choice in (1, 2):
        name = draw(st.sampled_from(("X-MGP-REQ-ID", "x-mgp-req-id", "X-Mgp-Req-Id")))
        return ((name, request_id.encode()),)
    if choice == 3:
        return (("X-MGP-REQ-ID", request_id.encode()), ("X-MGP-REQ-ID", b"second, ignored"))
    return (("traceparent", b"00-abc"), ("x-empty", None), ("\u00e9", b"\xff"))


@st.composite
def core_messages(draw: st.DrawFn) -> Hostile:
    draft = draw(drafts())
    members = draw(_members(draft))
    value = encode_fields(members)
    if draw(st.integers(0, 19)) == 0:
        value = b"\xef\xbb\xbf" + value  # a UTF-8 byte order mark
    return Hostile(
        kind=f"core:{draft.type_name}",
        value=value,
        headers=draw(_headers(draft.request_id)),
        expect="core",
        request_id=draft.request_id,
        command=draft.command(),
    )


def _ill_typed(name: str, type_name: str) -> st.SearchStrategy[Any]:
    nullable = name in NULLABLE or name in NULLABLE_BY_TYPE.get(type_name, set())
    null = () if nullable else (None,)
    if name in INT_FIELDS:
        return st.sampled_from(("1001", Raw("1001.0"), Raw("1e3"), True, [], Raw("1" * 45), *null))
    if name == "amount":
        return st.sampled_from((True, False, [], {"v": 1}, *null))
    if name == "completed":
        return st.sampled_from(("true", 1, 0, "yes", None))
    return st.sampled_from((5, Raw("1.5"), True, [], {"a": 1}, *null))


@st.composite
def edge_messages(draw: st.DrawFn) -> Hostile:
    """A message with one defect that the edge answers with one contract code."""
    draft = draw(drafts())
    members = dict(draw(_members(draft)))
    headers = draw(_headers(draft.request_id))
    mutation = draw(
        st.sampled_from(
            (
                "missing field",
                "missing type",
                "unknown type",
                "ill-typed",
                "header mismatch",
                "oversize",
                "unstorable text",
            )
        )
    )
    code = Code.VALIDATION_ERROR
    if mutation == "missing field":
        members.pop(draw(st.sampled_from(REQUIRED[draft.type_name])))
    elif mutation == "missing type":
        members.pop("type")
    elif mutation == "unknown type":
        members["type"] = draw(
            st.sampled_from(
                ("bets", "", " bet", "deposit2", "cr\u00e9ateAgent", "BET\x00", 5, None)
            )
        )
    elif mutation == "ill-typed":
        present = sorted(n for n in members if n in draft.members)
        name = draw(
            st.sampled_from([*present, "completed"] if draft.type_name == "win" else present)
        )
        members[name] = draw(_ill_typed(name, draft.type_name))
    elif mutation == "header mismatch":
        code = Code.PARAMETERS_INVALID
        name = draw(st.sampled_from(("X-MGP-REQ-ID", "x-mgp-req-id")))
        other = draw(
            st.sampled_from(
                (
                    str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))).encode(),
                    draft.request_id.swapcase().encode(),
                    (draft.request_id + " ").encode(),
                    b"",
                    None,
                    b"\xff\xfe",
                    b"x" * 10_000,
                )
            )
        )
        if other is not None and other.decode("utf-8", "replace") == draft.request_id:
            other = b"not it"  # a swapcase of an all-digit id would still match
        headers = ((name, other),)
    elif mutation == "oversize":
        code = Code.PARAMETERS_INVALID
        size = draw(st.sampled_from((MESSAGE_BYTES_MAX + 1, 200_000, MIB)))
        members["pad"] = "x" * size
    else:
        code = Code.PARAMETERS_INVALID
        texts = sorted(n for n in members if n in TEXT_FIELDS | {"amount"} and n in draft.members)
        if not texts:
            members["agentCode"] = ""
            texts = ["agentCode"]
        name = draw(st.sampled_from(texts))
        members[name] = Raw(draw(st.sampled_from(('"a\\u0000b"', '"\\ud800"', '"x\\udfff"'))))
    return Hostile(
        kind=f"edge:{mutation}",
        value=encode_fields(list(members.items())),
        headers=headers,
        expect="edge",
        request_id=draft.request_id,
        code=int(code),
    )


UNKNOWN_TYPES = ("bets", "", " bet", "deposit2", "cr\u00e9ateAgent", "BET\x00", 5, None)
ARABIC_INDIC_DIGITS = str.maketrans("0123456789", "".join(chr(0x660 + d) for d in range(10)))


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


BAD_REQUEST_IDS = (
    None,
    12345,
    [],
    {},
    "",
    "not-a-uuid",
    Raw('"\\ud800"'),
)


@st.composite
def _bad_request_id(draw: st.DrawFn, request_id: str) -> Any:
    hexa = request_id.replace("-", "")
    return draw(
        st.sampled_from(
            (
                *BAD_REQUEST_IDS,
                "{" + request_id + "}",
                "urn:uuid:" + request_id,
                hexa,
                " " + request_id,
                request_id + "\n",
                request_id.translate(
                    str.maketrans(
                        "0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
                    )
                ),
                request_id[:8] + "_" + request_id[9:],
                request_id + "0",
                "x" * MIB,
            )
        )
    )


@st.composite
def dead_messages(draw: st.DrawFn) -> Hostile:
    """A message with no usable requestId: it must go to the DLQ."""
    draft = draw(drafts())
    members = draw(_members(draft))
    valid = encode_fields(members)
    kind = draw(
        st.sampled_from(
            (
                "random bytes",
                "invalid utf-8",
                "not an object",
                "nested 10000 deep",
                "bad requestId",
                "missing requestId",
                "nan",
                "truncated",
                "trailing garbage",
                "1 MiB junk",
                "empty",
            )
        )
    )
    value: bytes | None
    if kind == "random bytes":
        value = draw(st.binary(min_size=1, max_size=300)).replace(b"{", b"(")
    elif kind == "invalid utf-8":
        # (Not b"\xed\xa0\x80": json.loads decodes bytes with "surrogatepass", so a
        # UTF-8-encoded surrogate arrives as "\ud800": the edge refuses it as text, 1012.)
        bad = draw(st.sampled_from((b"\xff\xfe", b"\xc3\x28", b"\xc0\xaf", b"\x80", b"\xf8\x88")))
        value = encode_fields([*members, ("agentCode", Raw('"@@"'))]).replace(b"@@", bad)
    elif kind == "not an object":
        value = draw(
            st.sampled_from(
                (
                    b"[1, 2]",
                    b'"a string"',
                    b"42",
                    b"null",
                    b"true",
                    _nested(10_000),
                    b"[" + valid + b"]",
                )
            )
        )
    elif kind == "nested 10000 deep":
        value = encode_fields([*members, ("deep", Raw(_nested(10_000).decode()))])
    elif kind == "bad requestId":
        bad_id = draw(_bad_request_id(draft.request_id))
        value = encode_fields([(n, bad_id if n == "requestId" else v) for n, v in members])
    elif kind == "missing requestId":
        value = encode_fields([(n, v) for n, v in members if n != "requestId"])
    elif kind == "nan":
        literal = draw(st.sampled_from(("NaN", "Infinity", "-Infinity")))
        value = encode_fields([*members, (draw(st.sampled_from(("amount", "x"))), Raw(literal))])
    elif kind == "truncated":
        value = valid[: draw(st.integers(1, len(valid) - 1))]
    elif kind == "trailing garbage":
        value = valid + draw(st.sampled_from((b" x", b"}", b",", b"\x00", b" {}")))
    elif kind == "1 MiB junk":
        value = draw(st.sampled_from((b"\x00" * MIB, b"{" * MIB, b"[" + b"1," * (MIB // 2) + b"1")))
    else:
        value = draw(st.sampled_from((b"", None, b" ", b"\n")))
    return Hostile(kind=f"dlq:{kind}", value=value, headers=draw(_headers(draft.request_id)))


def hostile_messages() -> st.SearchStrategy[Hostile]:
    """Core, edge and dead-letter messages, about 45 / 35 / 20 percent."""
    return st.integers(0, 19).flatmap(
        lambda n: core_messages() if n < 9 else edge_messages() if n < 16 else dead_messages()
    )


@st.composite
def hostile_batches(draw: st.DrawFn, size_max: int = 60) -> list[Hostile]:
    """A batch of hostile messages; some are delivered again later in the batch."""
    batch = draw(st.lists(hostile_messages(), min_size=1, max_size=size_max))
    for _ in range(draw(st.integers(0, 3))):
        batch.append(batch[draw(st.integers(0, len(batch) - 1))])
    return batch


# ------------------------------------------------------------------ the oracle


def _refused_payload(value: bytes) -> str:
    """What makes two refused messages the same request (README, "Decisions"): the JSON
    object without `timestampMs`, keys in any order, the requestId in any case, numbers
    by their text (a number is never equal to a string). Read with the standard library,
    not the edge's parser."""

    def number(text: str) -> tuple[str, str]:
        return ("number", text)

    def integer(text: str) -> tuple[str, Any]:
        # The edge keeps integers of more than 40 digits as text (schemas/commands.py).
        return ("number", text) if len(text.lstrip("-")) > 40 else ("integer", int(text))

    def ordered(item: Any) -> Any:
        if isinstance(item, dict):
            return ("object", tuple(sorted((k, ordered(v)) for k, v in item.items())))
        if isinstance(item, list):
            return ("array", tuple(ordered(v) for v in item))
        return item

    try:
        payload = json.loads(value, parse_float=number, parse_int=integer)
        payload = {k: v for k, v in payload.items() if k != "timestampMs"}
        payload["requestId"] = str(payload["requestId"]).lower()
        return repr(ordered(payload))
    except (ValueError, TypeError, AttributeError, KeyError, RecursionError):
        return hashlib.sha256(value).hexdigest()


class Oracle:
    """What the ledger must answer: the reference model for commands, the contract for
    refusals at the edge (remembered like any other answer)."""

    def __init__(self, setup: Sequence[c.Command] = HOSTILE_WORLD) -> None:
        self.model = ReferenceModel()
        for command in setup:
            assert self.model.apply(command).code == Code.OK, command

    def expect(self, hostile: Hostile, command: c.Command) -> ModelResult:
        if hostile.expect == "core":
            return self.model.apply(command)
        assert hostile.request_id is not None
        if hostile.kind == "edge:header mismatch":  # not told which request: not remembered
            return ModelResult(hostile.code)
        fingerprint = ("invalid", _refused_payload(hostile.value or b""))
        seen = self.model.requests.get(hostile.request_id.lower())
        if seen is None:
            self.model.requests[hostile.request_id.lower()] = (
                fingerprint,
                ModelResult(hostile.code),
            )
            return ModelResult(hostile.code)
        if seen[0] == fingerprint:
            return dataclasses.replace(seen[1], duplicate=True)
        return ModelResult(Code.IDEMPOTENCY_CONFLICT)

    def money(self, agent_code: str, minor: int | None) -> str | None:
        """An amount of an agent's currency as the wire writes it."""
        if minor is None:
            return None
        exponent = CURRENCY_EXPONENTS[self.model.agents[agent_code].currency]
        if exponent == 0:
            return str(minor)
        sign = "-" if minor < 0 else ""
        whole, fraction = divmod(abs(minor), 10**exponent)
        return f"{sign}{whole}.{fraction:0{exponent}d}"
