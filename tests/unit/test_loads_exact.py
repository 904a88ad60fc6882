"""`loads_exact` reads every text as the exact parser (`json` with hooks) does.

Its orjson fast path takes flat objects of text, integers, booleans and nulls; the
property: whatever the bytes, the answer (or the refusal) is the exact parser's.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.commands import JsonNumber, _loads_exact, loads_exact

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
commands = st.dictionaries(
    st.sampled_from(["type", "requestId", "agentCode", "userCode", "amount", "txnId", "x"]),
    values,
    max_size=7,
)


def _outcome(parse: Any, raw: bytes) -> Any:
    try:
        value = parse(raw)
    except (ValueError, RecursionError, UnicodeDecodeError) as error:
        return ("refused", type(error).__name__)
    return ("read", _typed(value))


def _typed(value: Any) -> Any:
    """The value with the type of every part (JsonNumber is a str: it must stay one)."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return (type(value).__name__, value)


@settings(max_examples=500)
@given(commands)
def test_an_object_is_read_as_the_exact_parser_reads_it(payload: dict[str, Any]) -> None:
    raw = json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert _outcome(loads_exact, raw) == _outcome(_loads_exact, raw)


@settings(max_examples=500)
@given(
    st.binary(max_size=60) | st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
def test_any_bytes_get_the_exact_parsers_answer(raw: bytes) -> None:
    assert _outcome(loads_exact, raw) == _outcome(_loads_exact, raw)


def test_the_cases_the_fast_path_must_leave_to_the_exact_parser() -> None:
    cases = {
        b'{"amount": 12.50}': {"amount": JsonNumber("12.50")},
        b'{"userCode": 18446744073709551616}': {"userCode": 18446744073709551616},
        b'{"amount": 1e400}': {"amount": JsonNumber("1e400")},
        b'{"a": "\\ud800"}': {"a": "\ud800"},
        b'{"a": [1.5]}': {"a": [JsonNumber("1.5")]},
        b'{"a": 1, "a": 2}': {"a": 2},
    }
    for raw, expected in cases.items():
        assert _typed(loads_exact(raw)) == _typed(expected), raw
    assert _outcome(loads_exact, b'{"a": NaN}')[0] == "refused"
