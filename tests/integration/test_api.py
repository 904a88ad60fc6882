"""The HTTP API over real HTTP (uvicorn on 127.0.0.1) and real PostgreSQL, with views
projected from real events of the ledger core."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from ledger import commands as c
from ledger.application import Ledger
from ledger.results import Result
from ledger.settings import Settings
from tests.builders import Desk, rid
from tests.integration.read_side import (
    ApiServer,
    drop_schemas,
    new_ledger,
    projector,
    settings_for,
    store_position,
    token_for,
)

pytestmark = pytest.mark.integration


@dataclass
class World:
    """A store with a known history, its views, an API server and a broker's token."""

    settings: Settings
    ledger: Ledger
    server: ApiServer
    token: str
    tokens: dict[str, str] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)

    def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        with self.server.client(token or self.token) as client:
            return client.get(path, params=params)

    def data(self, path: str, token: str | None = None, **params: Any) -> Any:
        response = self.get(path, token, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["code"] == 0 and body["message"] == "OK"
        return body["data"]


def _history(desk: Desk, results: dict[str, Result], users: dict[str, int]) -> None:
    """BR -> OP -> {CA (transfer), SE (seamless)}; KR (KRW) and BH (BHD) roots."""
    for code, parent, mode, currency in (
        ("BR", None, "transfer", "USD"),
        ("OP", "BR", "transfer", "USD"),
        ("CA", "OP", "transfer", "USD"),
        ("SE", "OP", "seamless", "USD"),
        ("KR", None, "transfer", "KRW"),
        ("BH", None, "transfer", "BHD"),
    ):
        assert desk.create_agent(code, parent, currency=currency, mode=mode, name=f"{code} name").ok
    steps = {
        "issue": lambda: desk.issue("BR", "5000"),
        "to_op": lambda: desk.transfer("BR", "OP", "3000"),
        "to_ca": lambda: desk.transfer("OP", "CA", "1000"),
        "to_se": lambda: desk.transfer("OP", "SE", "500"),
        "back": lambda: desk.transfer("CA", "OP", "100"),
    }
    for name, step in steps.items():
        results[name] = step()
    for agent, name in (("CA", "alice"), ("SE", "bob"), ("KR", "kim"), ("BH", "bahar")):
        results[f"user_{name}"] = desk.create_user(agent, name)
        users[name] = results[f"user_{name}"].user_code or 0
    alice, bob = users["alice"], users["bob"]
    play = {
        "deposit": lambda: desk.deposit("CA", alice, "200"),
        "bet1": lambda: desk.bet("CA", alice, "b1", "r1", "10.50"),
        "win1": lambda: desk.win("CA", alice, "w1", "r1", "25"),
        "bet2": lambda: desk.bet("CA", alice, "b2", "r2", "4"),
        "refund2": lambda: desk.refund("CA", alice, "b2"),
        "bonus": lambda: desk.win("CA", alice, "w2", None, "1.25", kind="bonus"),
        "withdraw": lambda: desk.withdraw("CA", alice, "50"),
        "sbet": lambda: desk.bet("SE", bob, "sb1", "sr1", "7"),
        "swin": lambda: desk.win("SE", bob, "sw1", "sr1", "3"),
        "kr_issue": lambda: desk.issue("KR", "1000000"),
        "kr_deposit": lambda: desk.deposit("KR", users["kim"], "1000"),
        "bh_issue": lambda: desk.issue("BH", "10.5"),
        "bh_deposit": lambda: desk.deposit("BH", users["bahar"], "1.5"),
    }
    for name, step in play.items():
        results[name] = step()
    assert all(result.ok for result in results.values()), results


@pytest.fixture(scope="module")
def world(database_url: str) -> Iterator[World]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    settings = settings_for(database_url, schema)
    ledger = new_ledger(settings)
    results: dict[str, Result] = {}
    users: dict[str, int] = {}
    _history(Desk(ledger), results, users)
    projector(settings, ledger).catch_up()
    server = ApiServer(settings)
    tokens = {code: token_for(settings, code)[0] for code in ("BR", "KR", "BH")}
    yield World(settings, ledger, server, tokens["BR"], tokens, results, users)
    server.stop()
    ledger.close()
    drop_schemas(database_url, schema)


# ------------------------------------------------------------------ agents and users


def test_an_agent_answers_every_field_of_the_contract(world: World) -> None:
    position = store_position(world.ledger)
    assert world.data("/v1/agents/CA") == {
        "code": "CA",
        "name": "CA name",
        "parentCode": "OP",
        "currency": "USD",
        "mode": "transfer",
        "balance": "750.00",  # 1000 in, 100 back, 200 deposited, 50 withdrawn
        "house": "-15.75",  # bets 14.50 - wins 26.25 - refunds 4.00
        "userCount": 1,
        "asOfSequence": position,
    }
    broker = world.data("/v1/agents/BR")
    assert "parentCode" not in broker  # a root has none: nulls are omitted
    assert (broker["balance"], broker["house"], broker["userCount"]) == ("2000.00", "0.00", 0)


def test_children_are_the_direct_children_with_their_balances_a_page_at_a_time(
    world: World,
) -> None:
    children = world.data("/v1/agents/OP/children")
    assert [child["code"] for child in children["items"]] == ["CA", "SE"]
    assert children["items"][1] == {
        "code": "SE",
        "name": "SE name",
        "parentCode": "OP",
        "currency": "USD",
        "mode": "seamless",
        "balance": "496.00",  # 500 - 7 staked + 3 won
        "house": "4.00",
        "userCount": 1,
    }
    assert "nextCursor" not in children
    first = world.data("/v1/agents/OP/children", limit=1)
    assert [child["code"] for child in first["items"]] == ["CA"]
    second = world.data("/v1/agents/OP/children", limit=1, cursor=first["nextCursor"])
    assert [child["code"] for child in second["items"]] == ["SE"]
    assert "nextCursor" not in second
    assert world.data("/v1/agents/CA/children")["items"] == []


def test_a_user_has_a_balance_in_transfer_mode_only(world: World) -> None:
    alice, bob = world.users["alice"], world.users["bob"]
    assert world.data(f"/v1/users/{alice}") == {
        "userCode": alice,
        "name": "alice",
        "agentCode": "CA",
        "currency": "USD",
        "balance": "165.75",  # 200 - 10.50 + 25 - 4 + 4 + 1.25 - 50
        "asOfSequence": store_position(world.ledger),
    }
    seamless = world.data(f"/v1/users/{bob}")
    assert "balance" not in seamless
    assert seamless["agentCode"] == "SE"


def test_amounts_carry_exactly_the_currency_exponent_digits(world: World) -> None:
    kr, bh = world.tokens["KR"], world.tokens["BH"]
    assert world.data(f"/v1/users/{world.users['kim']}", kr)["balance"] == "1000"
    assert world.data("/v1/agents/KR", kr)["balance"] == "999000"
    assert world.data(f"/v1/users/{world.users['bahar']}", bh)["balance"] == "1.500"
    assert world.data("/v1/agents/BH", bh)["balance"] == "9.000"
    history = world.data(f"/v1/users/{world.users['bahar']}/transactions", bh)["items"]
    assert (history[0]["amount"], history[0]["balanceAfter"]) == ("1.500", "1.500")
    assert world.data("/v1/balances/agent:BH", bh)["balance"] == "9.000"


# ------------------------------------------------------------------ history


def _item(result: Result, **fields: Any) -> dict[str, Any]:
    return {"transId": result.event_id, "sequence": result.sequence, **fields}


def test_user_history_has_every_field_with_balances_and_vendor_types(world: World) -> None:
    r, alice = world.results, world.users["alice"]
    items = world.data(f"/v1/users/{alice}/transactions")["items"]
    created = [item.pop("createdAtMs") for item in items]
    u = {"userCode": alice}
    assert items == [
        _item(r["deposit"], type="deposit", transType=4, **u, amount="200.00",
              balanceBefore="0.00", balanceAfter="200.00"),
        _item(r["bet1"], type="bet", transType=1, txnId="b1", roundId="r1", **u,
              amount="10.50", balanceBefore="200.00", balanceAfter="189.50"),
        _item(r["win1"], type="win", transType=2, txnId="w1", roundId="r1", **u,
              amount="25.00", balanceBefore="189.50", balanceAfter="214.50"),
        _item(r["bet2"], type="bet", transType=1, txnId="b2", roundId="r2", **u,
              amount="4.00", balanceBefore="214.50", balanceAfter="210.50"),
        _item(r["refund2"], type="refund", transType=16, txnId="b2", roundId="r2", **u,
              amount="4.00", balanceBefore="210.50", balanceAfter="214.50"),
        _item(r["bonus"], type="win", transType=32, txnId="w2", **u,
              amount="1.25", balanceBefore="214.50", balanceAfter="215.75"),
        _item(r["withdraw"], type="withdraw", transType=8, **u, amount="50.00",
              balanceBefore="215.75", balanceAfter="165.75"),
    ]  # fmt: skip
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    assert all(now_ms - 600_000 < ms <= now_ms for ms in created)
    assert created == sorted(created)


def test_seamless_user_history_has_no_balances(world: World) -> None:
    items = world.data(f"/v1/users/{world.users['bob']}/transactions")["items"]
    assert [(i["type"], i["transType"], i["amount"]) for i in items] == [
        ("bet", 1, "7.00"),
        ("win", 2, "3.00"),
    ]
    assert all("balanceBefore" not in i and "balanceAfter" not in i for i in items)


def test_agent_history_shows_the_agent_points_before_and_after(world: World) -> None:
    r = world.results
    items = world.data("/v1/agents/CA/transactions")["items"]
    for item in items:
        item.pop("createdAtMs")
    alice = {"userCode": world.users["alice"]}
    assert items == [
        _item(r["to_ca"], type="transferPoints", transType=64, amount="1000.00",
              balanceBefore="0.00", balanceAfter="1000.00"),
        _item(r["back"], type="transferPoints", transType=64, amount="100.00",
              balanceBefore="1000.00", balanceAfter="900.00"),
        _item(r["deposit"], type="deposit", transType=4, **alice, amount="200.00",
              balanceBefore="900.00", balanceAfter="700.00"),
        *(
            _item(r[name], type=kind, transType=number, txnId=txn,
                  **({"roundId": rnd} if rnd else {}), **alice, amount=amount,
                  balanceBefore="700.00", balanceAfter="700.00")
            for name, kind, number, txn, rnd, amount in (
                ("bet1", "bet", 1, "b1", "r1", "10.50"),
                ("win1", "win", 2, "w1", "r1", "25.00"),
                ("bet2", "bet", 1, "b2", "r2", "4.00"),
                ("refund2", "refund", 16, "b2", "r2", "4.00"),
                ("bonus", "win", 32, "w2", None, "1.25"),
            )
        ),
        _item(r["withdraw"], type="withdraw", transType=8, **alice, amount="50.00",
              balanceBefore="700.00", balanceAfter="750.00"),
    ]  # fmt: skip
    broker = world.data("/v1/agents/BR/transactions")["items"]
    assert [(i["type"], i["transType"], i["balanceAfter"]) for i in broker] == [
        ("issuePoints", 128, "5000.00"),
        ("transferPoints", 64, "2000.00"),
    ]
    seamless = world.data("/v1/agents/SE/transactions")["items"]
    assert [(i["type"], i["balanceBefore"], i["balanceAfter"]) for i in seamless] == [
        ("transferPoints", "0.00", "500.00"),
        ("bet", "500.00", "493.00"),  # the stake comes from the agent's points
        ("win", "493.00", "496.00"),
    ]


def test_agent_history_filters_by_time_window(world: World) -> None:
    items = world.data("/v1/agents/CA/transactions")["items"]
    third = items[2]["createdAtMs"]
    since = world.data("/v1/agents/CA/transactions", **{"from": third})["items"]
    assert since == [i for i in items if i["createdAtMs"] >= third]
    before = world.data("/v1/agents/CA/transactions", to=third)["items"]
    assert before == [i for i in items if i["createdAtMs"] < third]
    assert world.data("/v1/agents/CA/transactions", **{"from": 1, "to": 2})["items"] == []


def test_daily_ggr_is_bets_minus_wins_minus_refunds_per_utc_day(world: World) -> None:
    today = datetime.now(UTC).date().isoformat()
    ggr = world.data("/v1/agents/CA/ggr")
    assert ggr == {
        "agentCode": "CA",
        "currency": "USD",
        "items": [
            {"date": today, "bets": "14.50", "wins": "26.25", "refunds": "4.00", "ggr": "-15.75"}
        ],
        "asOfSequence": store_position(world.ledger),
    }
    assert world.data("/v1/agents/CA")["house"] == "-15.75"
    assert world.data("/v1/agents/CA/ggr", **{"from": today, "to": today})["items"] == ggr["items"]
    assert world.data("/v1/agents/CA/ggr", to="2001-01-01")["items"] == []
    assert world.data("/v1/agents/OP/ggr")["items"] == []


# ------------------------------------------------------------------ point in time


def test_point_in_time_balances_come_from_the_stored_events(world: World) -> None:
    r, alice = world.results, world.users["alice"]
    player = f"player:{alice}"
    for name in ("deposit", "bet1", "win1", "bet2", "refund2", "bonus", "withdraw"):
        result = r[name]
        assert result.sequence is not None and result.balance_minor is not None
        at = world.data(f"/v1/balances/{player}", asOf=result.sequence)
        assert at == {
            "account": player,
            "currency": "USD",
            "balance": f"{result.balance_minor // 100}.{result.balance_minor % 100:02d}",
            "sequence": result.sequence,
            "asOfSequence": result.sequence,
        }
        agent = world.data("/v1/balances/agent:CA", asOf=result.sequence)
        assert agent["balance"] == f"{(result.agent_balance_minor or 0) // 100}.00"
    just_before = world.data(f"/v1/balances/{player}", asOf=(r["deposit"].sequence or 0) - 1)
    assert just_before == {
        "account": player,
        "currency": "USD",
        "balance": "0.00",
        "asOfSequence": (r["deposit"].sequence or 0) - 1,
    }
    latest = world.data(f"/v1/balances/{player}")
    assert (latest["balance"], latest["sequence"]) == ("165.75", r["withdraw"].sequence)
    assert latest["asOfSequence"] == store_position(world.ledger)
    house = world.data("/v1/balances/house:CA", asOf=r["win1"].sequence)
    assert house["balance"] == "-14.50"


def test_point_in_time_by_epoch_milliseconds(world: World) -> None:
    alice = world.users["alice"]
    items = world.data(f"/v1/users/{alice}/transactions")["items"]
    win = items[2]
    at = world.data(f"/v1/balances/player:{alice}", asOf=win["createdAtMs"])
    assert at["sequence"] >= win["sequence"]  # the last change at or before that millisecond
    same_ms = [i for i in items if i["createdAtMs"] == win["createdAtMs"]]
    assert at["balance"] == same_ms[-1]["balanceAfter"]
    assert at["asOfSequence"] == store_position(world.ledger)
    long_ago = world.data(f"/v1/balances/player:{alice}", asOf=10**12)  # 2001-09-09
    assert (long_ago["balance"], "sequence" in long_ago) == ("0.00", False)
    seamless = world.data(f"/v1/balances/player:{world.users['bob']}")
    assert "balance" not in seamless and seamless["account"] == f"player:{world.users['bob']}"


# ------------------------------------------------------------------ protocol


def test_every_answer_echoes_or_generates_the_request_id_and_its_time(world: World) -> None:
    with world.server.client(world.token) as client:
        sent = client.get("/v1/agents/CA", headers={"X-MGP-REQ-ID": "req-42"})
        assert sent.headers["X-MGP-REQ-ID"] == "req-42"
        for path in ("/v1/agents/CA", "/v1/agents/NOPE", "/health", "/openapi.json", "/v1/x"):
            answer = client.get(path)
            uuid.UUID(answer.headers["X-MGP-REQ-ID"])
            assert int(answer.headers["X-MGP-RESPONSE-TIME"]) >= 0
    with world.server.client() as anonymous:
        refused = anonymous.get("/v1/agents/CA", headers={"X-MGP-REQ-ID": "req-43"})
        assert (refused.status_code, refused.headers["X-MGP-REQ-ID"]) == (401, "req-43")


def test_parameters_are_validated_with_the_contract_codes(world: World) -> None:
    alice = world.users["alice"]
    invalid = [
        (f"/v1/users/{alice}/transactions", {"limit": 0}),
        (f"/v1/users/{alice}/transactions", {"limit": 2001}),
        (f"/v1/users/{alice}/transactions", {"cursor": "not-a-cursor"}),
        ("/v1/agents/OP/children", {"cursor": "czEyMw"}),  # a history cursor
        ("/v1/agents/CA/transactions", {"from": 10, "to": 5}),
        ("/v1/agents/CA/ggr", {"from": "31-01-2025"}),
        ("/v1/agents/CA/ggr", {"from": "2025-02-01", "to": "2025-01-31"}),
        ("/v1/agents/CA", {"minSequence": -1}),
        (f"/v1/balances/player:{alice}", {"asOf": -5}),
    ]
    ill_typed = [
        (f"/v1/users/{alice}/transactions", {"limit": "many"}),
        ("/v1/users/alice", {}),
        ("/v1/agents/CA", {"minSequence": "soon"}),
        ("/v1/no/such/endpoint", {}),
    ]
    for expected, cases in ((1012, invalid), (1002, ill_typed)):
        for path, params in cases:
            answer = world.get(path, **params)
            assert (answer.status_code, answer.json()["code"]) == (400, expected), (path, params)
            assert answer.json()["data"] == {}
    assert len(world.data(f"/v1/users/{alice}/transactions", limit=2000)["items"]) == 7


def test_a_parameter_given_empty_is_absent(world: World) -> None:
    """`?cursor=&limit=` as the contract writes it: the first page of the default size."""
    alice = world.users["alice"]
    history = f"/v1/users/{alice}/transactions"
    assert world.data(history, cursor="", limit="") == world.data(history)
    agent_history = "/v1/agents/CA/transactions"
    blank = {"cursor": "", "limit": "", "from": "", "to": ""}
    assert world.data(agent_history, **blank) == world.data(agent_history)
    first = world.data(history, limit=2, cursor="")
    assert len(first["items"]) == 2 and "nextCursor" in first
    assert world.data("/v1/agents/CA", minSequence="") == world.data("/v1/agents/CA")
    balance = f"/v1/balances/player:{alice}"
    assert world.data(balance, asOf="") == world.data(balance)
    assert world.data("/v1/agents/CA/ggr", **{"from": "", "to": ""}) == world.data(
        "/v1/agents/CA/ggr"
    )
    answer = world.get(history, limit=" ")  # not empty: checked as before
    assert (answer.status_code, answer.json()["code"]) == (400, 1002)


def test_hostile_input_is_answered_as_bad_or_missing_never_as_our_failure(world: World) -> None:
    nul_cursor = "YwA"  # base64 of "c\x00"
    cases = {
        "/v1/agents/%00": 2001,
        "/v1/agents/" + "A" * 5000: 2001,
        "/v1/agents/CA%27%3B--": 2001,
        "/v1/balances/agent:%00": 2001,
        "/v1/balances/player:%C2%B2": 2002,  # a Unicode digit
        "/v1/balances/player:-1": 2002,
        "/v1/users/99999999999999999999999": 2002,
        "/v1/users/-5/transactions": 2002,
    }
    for path, code in cases.items():
        answer = world.get(path)
        assert answer.json()["code"] == code, (path, answer.text)
    cursor = world.get("/v1/agents/OP/children", cursor=nul_cursor)
    assert cursor.json()["code"] == 1012
    future = world.get("/v1/agents/CA", minSequence=10**23)
    assert (future.status_code, future.json()["code"]) == (503, 1001)
    slow = world.get("/v1/balances/agent:CA", asOf=10**30)  # epoch ms far in the future
    assert slow.json()["data"]["balance"] == "750.00"


def test_the_openapi_document_lists_every_endpoint_with_examples(world: World) -> None:
    with world.server.client() as client:
        document = client.get("/openapi.json").json()
    assert set(document["paths"]) >= {
        "/v1/agents/{agentCode}",
        "/v1/agents/{agentCode}/children",
        "/v1/agents/{agentCode}/transactions",
        "/v1/agents/{agentCode}/ggr",
        "/v1/users/{userCode}",
        "/v1/users/{userCode}/transactions",
        "/v1/balances/{account}",
        "/health",
        "/metrics",
    }
    agent = document["paths"]["/v1/agents/{agentCode}"]["get"]
    assert agent["security"] == [{"bearer": []}]
    assert {"200", "401", "404", "429", "503"} <= set(agent["responses"])
    schemas = document["components"]["schemas"]
    assert schemas["AgentData"]["properties"]["balance"]["examples"] == ["1000.00"]
    assert schemas["TransactionItem"]["properties"]["transType"]["examples"] == [1]


def test_health_and_metrics_report_the_projection(world: World) -> None:
    with world.server.client() as client:
        health = client.get("/health").json()
        position = store_position(world.ledger)
        assert health == {
            "code": 0,
            "message": "OK",
            "data": {"status": "ok", "projectionPosition": position, "storePosition": position},
        }
        metrics = client.get("/metrics").text
    assert f"ledger_projection_position {float(position)}" in metrics
    assert 'ledger_api_requests_total{route="/health",status="200"}' in metrics


# ------------------------------------------------------------------ live projection


@pytest.fixture
def live(database_url: str, pg_schema: str) -> Iterator[World]:
    """A fresh store whose projector follows it in a thread while the test writes."""
    settings = settings_for(database_url, pg_schema, api_min_sequence_wait_ms=2000)
    ledger = new_ledger(settings)
    desk = Desk(ledger)
    _, user = desk.casino(points="100000", player_funds="1000")
    follower = projector(settings, new_ledger(settings))
    stop = threading.Event()
    thread = threading.Thread(target=follower.run_forever, args=(stop,), daemon=True)
    thread.start()
    server = ApiServer(settings)
    token, _ = token_for(settings, "BR")
    yield World(settings, ledger, server, token, users={"alice": user})
    server.stop()
    stop.set()
    thread.join(timeout=10)
    ledger.close()


def test_a_client_passing_min_sequence_always_reads_its_own_write(live: World) -> None:
    alice = live.users["alice"]
    commands: list[c.Command] = []
    for n in range(40):
        commands.append(
            c.Bet(
                request_id=rid(), agent_code="CA", user_code=alice, txn_id=f"b{n}",
                round_id=f"r{n}", amount=f"{n}.25",
            )
        )  # fmt: skip
        commands.append(c.Deposit(request_id=rid(), agent_code="CA", user_code=alice, amount="3"))
    with live.server.client(live.token) as client:
        for command in commands:
            result = live.ledger.handle(command)
            assert result.ok and result.sequence is not None
            answer = client.get(f"/v1/users/{alice}", params={"minSequence": result.sequence})
            assert answer.status_code == 200, answer.text
            data = answer.json()["data"]
            assert data["asOfSequence"] >= result.sequence
            balance = result.balance_minor or 0
            assert data["balance"] == f"{balance // 100}.{balance % 100:02d}"
            agent = client.get("/v1/agents/CA", params={"minSequence": result.sequence}).json()
            assert agent["data"]["balance"] == f"{(result.agent_balance_minor or 0) // 100}.00"


def test_a_min_sequence_not_reached_in_time_is_503_with_retry_after(
    database_url: str, pg_schema: str
) -> None:
    settings = settings_for(database_url, pg_schema, api_min_sequence_wait_ms=300)
    ledger = new_ledger(settings)
    Desk(ledger).create_agent("BR")
    projector(settings, ledger).catch_up()
    server = ApiServer(settings)
    token, _ = token_for(settings, "BR")
    try:
        with server.client(token) as client:
            started = time.monotonic()
            answer = client.get("/v1/agents/BR", params={"minSequence": 10**9})
            waited = time.monotonic() - started
            assert (answer.status_code, answer.json()["code"]) == (503, 1001)
            assert answer.headers["Retry-After"] == "1"
            assert 0.3 <= waited < 2.0
            reached = client.get("/v1/agents/BR", params={"minSequence": 1})
            assert reached.status_code == 200
    finally:
        server.stop()
        ledger.close()


def test_a_point_in_time_balance_waits_for_the_views_to_reach_the_stored_event(
    database_url: str, pg_schema: str
) -> None:
    """`/v1/balances` answers from the event store: a sequence the store holds is never
    answered with an older balance because the views have not located it yet."""
    settings = settings_for(database_url, pg_schema, api_min_sequence_wait_ms=300)
    ledger = new_ledger(settings)
    desk = Desk(ledger)
    casino, alice = desk.casino()
    views = projector(settings, ledger)
    views.catch_up()
    projected = desk.deposit(casino, alice, "1.00")
    views.catch_up()
    ahead = desk.deposit(casino, alice, "2.00")  # in the store, not in the views
    assert projected.sequence is not None and ahead.sequence is not None
    server = ApiServer(settings)
    token, _ = token_for(settings, casino)
    account = f"/v1/balances/player:{alice}"
    try:
        with server.client(token) as client:
            known = client.get(account, params={"asOf": projected.sequence}).json()
            assert (known["code"], known["data"]["balance"]) == (0, "101.00")
            for params in ({"asOf": ahead.sequence}, {}, {"asOf": int(time.time() * 1000)}):
                answer = client.get(account, params=params)
                assert (answer.status_code, answer.json()["code"]) == (503, 1001), params
                assert answer.headers["Retry-After"] == "1"
        settings = settings_for(database_url, pg_schema, api_min_sequence_wait_ms=5_000)
        server.stop()
        server = ApiServer(settings)
        late = threading.Timer(0.3, views.catch_up)
        late.start()
        with server.client(token) as client:
            answer = client.get(account, params={"asOf": ahead.sequence}).json()
        late.join()
        assert answer["code"] == 0
        assert answer["data"] == {
            "account": f"player:{alice}",
            "currency": "USD",
            "balance": "103.00",
            "sequence": ahead.sequence,
            "asOfSequence": ahead.sequence,
        }
    finally:
        server.stop()
        ledger.close()


def test_a_trailing_slash_is_an_unknown_path_with_the_envelope(world: World) -> None:
    answer = world.get("/v1/agents/CA/")
    assert answer.status_code == 400
    assert answer.json()["code"] == 1002
    assert "location" not in answer.headers


# ------------------------------------------------------------------ pagination at scale


def test_pagination_is_stable_across_ten_thousand_transactions(
    database_url: str, pg_schema: str
) -> None:
    settings = settings_for(database_url, pg_schema)
    ledger = new_ledger(settings)
    desk = Desk(ledger)
    casino, alice = desk.casino(points="10000000", player_funds="10000")
    commands: list[c.Command] = []
    for n in range(5000):
        commands.append(
            c.Bet(
                request_id=rid(),
                agent_code=casino,
                user_code=alice,
                txn_id=f"b{n}",
                round_id=f"r{n}",
                amount="1.00",
            )
        )
        commands.append(
            c.Win(
                request_id=rid(), agent_code=casino, user_code=alice, txn_id=f"w{n}",
                round_id=f"r{n}", amount="0.50",
            )
        )  # fmt: skip
    sequences = [
        result.sequence
        for start in range(0, len(commands), 5000)
        for result in ledger.handle_batch(commands[start : start + 5000])
    ]
    follower = projector(settings, ledger)
    follower.catch_up()
    server = ApiServer(settings)
    token, _ = token_for(settings, "OP")
    try:
        with server.client(token) as client:

            def walk(limit: int | None) -> list[dict[str, Any]]:
                items: list[dict[str, Any]] = []
                cursor = None
                while True:
                    params: dict[str, Any] = {} if limit is None else {"limit": limit}
                    if cursor is not None:
                        params["cursor"] = cursor
                    data = client.get(f"/v1/users/{alice}/transactions", params=params).json()[
                        "data"
                    ]
                    assert len(data["items"]) <= (limit or 100)
                    items.extend(data["items"])
                    cursor = data.get("nextCursor")
                    if cursor is None:
                        return items

            full = walk(2000)
            assert len(full) == 10_001
            assert [i["sequence"] for i in full[1:]] == sequences
            assert full[0]["type"] == "deposit"
            assert all(
                prev["balanceAfter"] == cur["balanceBefore"]
                for prev, cur in itertools.pairwise(full)
            )
            assert full[-1]["balanceAfter"] == "7500.00"  # 10000 - 5000 + 2500
            assert walk(None) == full  # 101 pages of the default 100
            # More transactions arrive while a client pages: the pages already read
            # stay as they were and the new ones follow at the end.
            first = client.get(f"/v1/users/{alice}/transactions", params={"limit": 777}).json()
            assert desk.bet(casino, alice, "x", "rx", "2").ok
            follower.catch_up()
            again = walk(777)
            assert again[:777] == first["data"]["items"]
            assert again[:-1] == full and again[-1]["txnId"] == "x"
    finally:
        server.stop()
        ledger.close()
