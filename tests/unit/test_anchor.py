"""The seal anchor: what the ledger logs, and what `verify` does with one."""

from __future__ import annotations

import logging
import uuid

import pytest

from consumers.app import _AnchorLog
from ledger.application import Ledger
from ledger.audit import parse_anchor, verify
from tests.builders import Desk


def _ledger_with_history() -> Ledger:
    ledger = Ledger()
    desk = Desk(ledger)
    casino, user = desk.casino()
    assert desk.bet(casino, user, "t1", "r1", "5").ok
    return ledger


def test_the_anchor_names_the_newest_seal_and_verify_finds_it() -> None:
    ledger = Ledger()
    assert ledger.anchor() is None  # nothing written yet
    ledger = _ledger_with_history()
    anchor = ledger.anchor()
    assert anchor is not None
    parsed = parse_anchor(anchor)
    assert (parsed.writer, parsed.version, parsed.hash) == (
        ledger.writer_id,
        ledger.seal_version,
        ledger.seal_hash,
    )
    assert str(parsed) == anchor
    report = verify(ledger.recorder, ledger.mapper.transcoder, anchors=[parsed])
    assert report.findings == []


def test_an_anchor_whose_seal_differs_or_is_missing_is_a_finding() -> None:
    ledger = _ledger_with_history()
    writer, version, hash_ = ledger.anchor().split(":")  # type: ignore[union-attr]
    rewritten = parse_anchor(f"{writer}:{version}:{'0' * 64}")
    beyond = parse_anchor(f"{writer}:{int(version) + 1}:{hash_}")
    report = verify(ledger.recorder, ledger.mapper.transcoder, anchors=[rewritten, beyond])
    whats = [finding.what for finding in report.findings]
    assert whats == [
        f"the seal's hash is not the anchor's {'0' * 64}",
        f"the anchor's seal {int(version) + 1} is not in the store: "
        "transactions up to it were deleted",
    ]


@pytest.mark.parametrize(
    "text",
    ["", "x:1:" + "a" * 64, f"{uuid.uuid4()}:0:{'a' * 64}", f"{uuid.uuid4()}:1:{'A' * 64}",
     f"{uuid.uuid4()}:1:abc", f"{uuid.uuid4()}:1"],
)  # fmt: skip
def test_a_malformed_anchor_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_anchor(text)


def test_the_consumer_logs_a_new_anchor_at_most_every_interval_and_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = _ledger_with_history()
    anchors = _AnchorLog(ledger)
    with caplog.at_level(logging.INFO, logger="ledger.consumer"):
        anchors.log()
        first = ledger.anchor()
        Desk(ledger).deposit("CA", 1001, "1")
        anchors.log()  # within the interval: not again
        anchors.log(force=True)  # shutdown: the newest
        anchors.log(force=True)  # nothing new since: not again
    logged = [r.getMessage() for r in caplog.records if "seal anchor" in r.getMessage()]
    assert logged == [
        f"seal anchor (ledger audit verify --anchor): {first}",
        f"seal anchor (ledger audit verify --anchor): {ledger.anchor()}",
    ]
    assert first != ledger.anchor()
