"""`event_id` is uuid5 of "<stream>/<version>" in the ledger's namespace, computed fast."""

from uuid import UUID, uuid5

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain import NAMESPACE, event_id, name_uuid


@given(st.uuids(), st.integers(min_value=1, max_value=2**63 - 1))
def test_event_id_is_the_uuid5_of_stream_and_version(stream_id: UUID, version: int) -> None:
    expected = str(uuid5(NAMESPACE, f"{stream_id}/{version}"))
    assert event_id(stream_id, version) == expected


def test_a_known_event_id_never_changes() -> None:
    # Results and history rows already carry ids computed this way: they must not move.
    stream_id = UUID("12345678-1234-5678-1234-567812345678")
    assert event_id(stream_id, 1) == "475ca4ab-ae8d-5618-a344-542e98ad9a12"
    assert event_id(stream_id, 2) == "7f9336f5-6113-5e49-b319-1ab9dc249ca1"


@given(st.text())
def test_name_uuid_is_the_uuid5_of_the_name(name: str) -> None:
    try:
        expected = uuid5(NAMESPACE, name)
    except UnicodeEncodeError:  # a lone surrogate: neither may encode it
        with pytest.raises(UnicodeEncodeError):
            name_uuid(name)
    else:
        assert name_uuid(name) == expected


def test_a_known_request_stream_never_changes() -> None:
    # Request records are stored under this id: it must not move.
    assert name_uuid("request:0a1b") == UUID("e36dacd4-9adc-5656-b422-0abda71971a8")
