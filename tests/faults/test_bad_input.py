"""Bad input (issue 8): hostile messages at the Kafka edge and hostile requests at the HTTP API.

Every hostile message gets the contract's code or goes to the DLQ; the service never
crashes, no partition stalls, nothing valid is lost. Most of the volume runs in process
(`consumers.decode.decode` + `Ledger.handle_batch` in memory, every answer compared with the
reference model), a real sample through Kafka and the running service, and the HTTP API gets
hostile paths, parameters and headers: never a 5xx but the documented 503 / 1001.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from consumers.decode import DeadLetter, decode, encode_result
from ledger import commands as c
from ledger.application import Ledger
from ledger.audit import verify
from ledger.commands import Command, InvalidCommand
from ledger.errors import Code
from ledger.settings import store_env
from projections.http import HTTP_STATUS
from tests.bench.workload import casino_play, casino_world
from tests.e2e.harness import Stack
from tests.faults.dedicated import DedicatedServices
from tests.faults.figures import record
from tests.faults.harness import (
    KafkaClient,
    Message,
    ReadSide,
    RunFigures,
    accounts_differing,
    build_world,
    message,
    serve_hostile_world,
    verify_run,
)
from tests.faults.hostile import (
    CONTRACT_CODES,
    HOSTILE_WORLD,
    Hostile,
    Oracle,
    encode_fields,
    hostile_batches,
)
from tests.unit.reference_model import ModelResult
from tests.wire import wire_bytes

pytestmark = pytest.mark.faults


@dataclass(frozen=True)
class InputScale:
    name: str
    in_process: int  # hostile messages through decode + core, in memory
    kafka: int  # hostile messages through Kafka and the running service
    http: int  # hostile HTTP requests


BOUNDED = InputScale("bounded", 10_000, 600, 400)
FULL = InputScale("full", 100_000, 3_000, 3_000)
SCALES = [
    pytest.param(BOUNDED, id="bounded", marks=pytest.mark.faults_bounded),
    pytest.param(FULL, id="full", marks=pytest.mark.faults_full),
]
BATCH_MESSAGES_MEAN = 32  # hostile_batches: 1..60 messages plus up to 3 copies
FEED_ROUNDS_MAX = 20
RESULT_BYTES_MAX = 256 * 1024  # what a result may weigh on Kafka, whatever was sent


def _describe(hostile: Hostile) -> str:
    value = hostile.value or b""
    return f"{hostile.kind}: {value[:300]!r}{'...' if len(value) > 300 else ''} {hostile.headers}"


def check_batch(
    ledger: Ledger, oracle: Oracle, batch: Sequence[Hostile], tried: Counter[str]
) -> None:
    """Decode every message, run the answerable ones through the core as one batch, and
    compare every answer with the oracle's."""
    commands: list[Command] = []
    expected = []
    for hostile in batch:
        tried["messages"] += 1
        tried[hostile.expect] += 1
        decoded = decode(hostile.value, list(hostile.headers))
        if hostile.expect == "dlq":
            assert isinstance(decoded, DeadLetter), (_describe(hostile), decoded)
            continue
        assert not isinstance(decoded, DeadLetter), (_describe(hostile), decoded)
        if hostile.expect == "edge":
            assert isinstance(decoded, InvalidCommand), (_describe(hostile), decoded)
            assert decoded.code == hostile.code, (_describe(hostile), decoded)
        else:
            assert decoded == hostile.command, (_describe(hostile), decoded, hostile.command)
        commands.append(decoded)
        expected.append((hostile, oracle.expect(hostile, decoded)))
    results = ledger.handle_batch(commands)  # the core never raises on input
    assert len(results) == len(commands)
    for result, (hostile, want) in zip(results, expected, strict=True):
        assert result.code in CONTRACT_CODES and result.code != Code.INTERNAL_SERVER_ERROR
        got = (
            result.code,
            result.duplicate,
            result.balance_minor,
            result.agent_balance_minor,
            result.user_code,
        )
        wanted = (
            want.code,
            want.duplicate,
            want.balance_minor,
            want.agent_balance_minor,
            want.user_code,
        )
        assert got == wanted, (_describe(hostile), result, want)
        assert len(encode_result(result)) < RESULT_BYTES_MAX


def assert_books_match(ledger: Ledger, oracle: Oracle) -> int:
    """Every agent the model knows has the model's balances in the ledger; returns how many."""
    for code, agent in oracle.model.agents.items():
        book = ledger.book(code)
        assert book is not None, code
        assert (book.points_minor, book.house_minor) == (agent.points_minor, agent.house_minor)
        stored = {int(user): entry[1] for user, entry in book.players.items()}
        assert stored == agent.players, code
    return len(oracle.model.agents)


def feed_in_process(ledger: Ledger, oracle: Oracle, messages_min: int) -> Counter[str]:
    """Run hypothesis-generated batches until at least `messages_min` messages were tried."""
    tried: Counter[str] = Counter()
    examples = max(10, messages_min // BATCH_MESSAGES_MEAN // 2)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # no shrinking: the ledger's state moved on
        suppress_health_check=list(HealthCheck),
    )
    @given(batch=hostile_batches())
    def feed(batch: list[Hostile]) -> None:
        check_batch(ledger, oracle, batch, tried)

    for _ in range(FEED_ROUNDS_MAX):
        if tried["messages"] >= messages_min:
            break
        feed()
    return tried


@pytest.mark.parametrize("scale", SCALES)
def test_every_hostile_message_in_process_gets_its_contract_code_or_goes_to_the_dlq(
    scale: InputScale,
) -> None:
    started = time.monotonic()
    ledger = Ledger()
    oracle = Oracle()
    assert [r.code for r in ledger.handle_batch(list(HOSTILE_WORLD))] == [0] * len(HOSTILE_WORLD)

    tried = feed_in_process(ledger, oracle, scale.in_process)

    agents = assert_books_match(ledger, oracle)
    audit = verify(ledger.recorder, ledger.mapper.transcoder)
    assert audit.findings == []
    assert tried["messages"] >= scale.in_process
    assert min(tried["dlq"], tried["edge"], tried["core"]) > scale.in_process // 10
    record(
        f"bad input in process[{scale.name}]",
        {
            "bad_inputs": tried["messages"],
            "dead_lettered": tried["dlq"],
            "refused_at_the_edge": tried["edge"],
            "decoded_commands": tried["core"],
            "agents_compared": agents,
            "audit_events": audit.events,
            "audit_findings": len(audit.findings),
            "crashes": 0,
            "seconds": round(time.monotonic() - started, 1),
        },
    )


# ------------------------------------------------------------------ through Kafka

HOSTILE_KEY = b"HC"  # answerable hostile messages share one partition: their order is known
DEAD_KEYS = (None, b"", b"HC", b"\xff\xfe", b"k" * 10_000, b"\x00")
KAFKA_VALUE_BYTES_MAX = 1_040_000  # larger values do not fit the broker's default limit
PLAY_COMMANDS = {"bounded": 2_000, "full": 10_000}


def draw_sample(messages: int) -> list[Hostile]:
    """At least `messages` hostile messages from the strategies (a bounded number of rounds)."""
    sample: list[Hostile] = []

    @settings(
        max_examples=max(10, messages // BATCH_MESSAGES_MEAN),
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(batch=hostile_batches())
    def collect(batch: list[Hostile]) -> None:
        sample.extend(h for h in batch if len(h.value or b"") <= KAFKA_VALUE_BYTES_MAX)

    for _ in range(FEED_ROUNDS_MAX):
        if len(sample) >= messages:
            break
        collect()
    return sample[:messages]


def near_the_broker_limit() -> list[Hostile]:
    """Messages of about 1 MiB that used to stall their partition: the result or the dead
    letter was larger than the producer may send, and the batch was retried forever."""
    rid = str(uuid.uuid4())
    agent = encode_fields([("requestId", rid), ("type", "bet"), ("agentCode", "A" * 1_048_380)])
    return [
        Hostile("edge:1 MiB agentCode", agent, expect="edge", request_id=rid, code=1012),
        Hostile("dlq:1 MiB junk", b"x" * 1_048_480),
        Hostile("dlq:1 MiB junk", b"{" * 1_040_000),
    ]


def _wire(result: dict[str, Any]) -> tuple[Any, ...]:
    return (
        result["code"],
        result["duplicate"],
        result.get("balance"),
        result.get("agentBalance"),
        result.get("userCode"),
    )


def _expected_wire(oracle: Oracle, agent_code: str, want: ModelResult) -> tuple[Any, ...]:
    known = agent_code in oracle.model.agents

    def money(minor: int | None) -> str | None:
        return oracle.money(agent_code, minor) if known else None

    return (
        want.code,
        want.duplicate,
        money(want.balance_minor),
        money(want.agent_balance_minor),
        want.user_code,
    )


@pytest.fixture
def kafka_sample(request: pytest.FixtureRequest) -> list[Hostile]:
    """The hostile sample, drawn before any client thread runs: hypothesis watches the
    global `random` state, which aiokafka's threads touch."""
    scale: InputScale = request.node.callspec.params["scale"]
    return [*near_the_broker_limit(), *draw_sample(scale.kafka)]


@pytest.mark.parametrize("scale", SCALES)
def test_a_hostile_sample_through_kafka_is_answered_or_dead_lettered_beside_valid_work(
    scale: InputScale, kafka_sample: list[Hostile], stack: Stack, client: KafkaClient
) -> None:
    started = time.monotonic()
    service = stack.service()
    service.start()
    client.send([(HOSTILE_KEY, wire_bytes(c), []) for c in HOSTILE_WORLD])
    answers = client.wait_answered({c.request_id for c in HOSTILE_WORLD}, 60)
    assert all(a[0]["code"] == 0 for a in answers.values())
    world = build_world(client, casino_world(casinos=4, players_per_casino=5))
    play = casino_play(world, PLAY_COMMANDS[scale.name], seed=41)
    sample = kafka_sample
    rng = random.Random(43)

    def key_of(hostile: Hostile) -> bytes | None:
        if hostile.expect != "dlq":
            return HOSTILE_KEY
        key = rng.choice(DEAD_KEYS)
        return b"" if key is None and hostile.value is None else key  # aiokafka needs one

    hostile_messages: list[Message] = [(key_of(h), h.value, list(h.headers)) for h in sample]
    mixed: list[Message] = []
    every = max(1, len(play) // len(hostile_messages))
    for n, command in enumerate(play):
        mixed.append(message(command))
        if n % every == 0 and hostile_messages:
            mixed.append(hostile_messages.pop(0))
    mixed.extend(hostile_messages)
    client.send(mixed)

    answerable = [h for h in sample if h.expect != "dlq"]
    dead = [h for h in sample if h.expect == "dlq"]
    per_request = Counter(h.request_id for h in answerable)
    play_ids = {c.request_id for c in play}

    def all_in() -> bool:
        return (
            all(len(client.answers.get(r, ())) >= n for r, n in per_request.items())
            and len(client.dead) >= len(dead)
            and all(r in client.answers for r in play_ids)
        )

    assert client.wait_for(all_in, 300), "a partition stalled: not every message was answered"
    assert service.process is not None and service.process.poll() is None, "the service died"
    time.sleep(1.0)  # nothing more may arrive: exactly one result per answerable message
    answers_now, dead_letters = client.snapshot()
    hostile_answers = {r: answers_now[r] for r in per_request}
    play_answers = {r: answers_now[r] for r in play_ids}
    assert {r: len(a) for r, a in hostile_answers.items()} == dict(per_request)
    assert len(dead_letters) == len(dead)

    oracle = Oracle([*HOSTILE_WORLD, *world.setup])
    seen: Counter[str] = Counter()
    for hostile in answerable:
        assert hostile.request_id is not None
        decoded = decode(hostile.value, list(hostile.headers))
        assert not isinstance(decoded, DeadLetter)
        want = oracle.expect(hostile, decoded)
        got = hostile_answers[hostile.request_id][seen[hostile.request_id]]
        seen[hostile.request_id] += 1
        assert got["code"] in CONTRACT_CODES and got["code"] != Code.INTERNAL_SERVER_ERROR
        assert _wire(got) == _expected_wire(oracle, got["agentCode"], want), (
            _describe(hostile),
            got,
            want,
        )
    sent_dead = Counter(h.value or b"" for h in dead)
    truncated = [r for r in dead_letters if "x-dlq-truncated" in dict(r.headers)]
    whole = Counter(r.value or b"" for r in dead_letters if r not in truncated)
    assert all(dict(r.headers).get("x-dlq-reason") for r in dead_letters)
    assert sum(whole.values()) + len(truncated) == sum(sent_dead.values())
    assert all(sent_dead[v] >= n for v, n in whole.items()), "a dead letter was altered"
    assert all(len(r.value) <= 64 * 1024 for r in truncated)
    assert len(truncated) >= 2  # the two 1 MiB junk messages

    service.stop()
    figures = RunFigures(scenario=f"bad input through kafka[{scale.name}]")
    verify_run(figures, stack, world, play, play_answers, prelude=HOSTILE_WORLD)
    hostile_agents = set(oracle.model.agents) - {
        cmd.agent_code for cmd in world.setup if isinstance(cmd, c.CreateAgent)
    }
    stored = Ledger(store_env(stack.database_url, stack.schema, pool_size=1))
    try:
        assert accounts_differing(stored, oracle.model, hostile_agents) == 0
    finally:
        stored.close()
    values = dataclasses.asdict(figures)
    values.update(
        bad_inputs=len(sample),
        dead_lettered=len(dead_letters),
        dead_letters_truncated=len(truncated),
        answered_hostile=len(answerable),
        seconds=round(time.monotonic() - started, 1),
    )
    record(figures.scenario, values)


def test_odd_headers_lying_content_types_and_empty_records_drop_or_stall_nothing(
    stack: Stack, client: KafkaClient
) -> None:
    """FastStream decoded every header as UTF-8 and every body by its content-type before
    the handler ran: one such message made it drop the whole batch, unanswered, and the
    next batch committed past it."""
    service = stack.service()
    service.start()
    client.send([(HOSTILE_KEY, wire_bytes(c), []) for c in HOSTILE_WORLD])
    client.wait_answered({c.request_id for c in HOSTILE_WORLD}, 60)
    tricks: list[list[tuple[str, bytes | None]]] = [
        [("x-note", b"\xff\xfe")],
        [("x-note", None)],
        [("content-type", b"application/json")],
        [("content-type", b"text/plain")],
        [("content-type", b"application/x-unknown")],
        [("\u00e9t\u00e9", b"\xc3\x28")],
    ]
    bodies = [b"{not json", b"\xff\xfe\x00", b"[1, 2]"]
    valid = [
        c.CreateUser(request_id=str(uuid.uuid4()), agent_code="HC", name=f"u{n}")
        for n in range(len(tricks) * len(bodies))
    ]
    mixed: list[Message] = []
    for n, command in enumerate(valid):
        headers = tricks[n % len(tricks)]
        mixed.append((HOSTILE_KEY, bodies[n % len(bodies)], headers))
        mixed.append((HOSTILE_KEY, wire_bytes(command), [*headers]))
    client.send(mixed[: len(mixed) // 2])
    for partition in range(8):  # neither key nor value: the dead letter needs a key
        client.send_null_record(partition)
    client.send(mixed[len(mixed) // 2 :])

    answers = client.wait_answered({c.request_id for c in valid}, 60)
    assert client.wait_for(lambda: len(client.dead) >= len(valid) + 8, 30)

    assert [answers[c.request_id][0]["code"] for c in valid] == [0] * len(valid)
    assert service.process is not None and service.process.poll() is None
    _, dead = client.snapshot()
    sent_dead = [bodies[n % len(bodies)] for n in range(len(valid))] + [b""] * 8
    assert sorted(r.value or b"" for r in dead) == sorted(sent_dead)
    assert sum(r.value is None for r in dead) == 8


# ------------------------------------------------------------------ HTTP

NON_ENVELOPE_PATHS = ("/docs", "/openapi.json", "/metrics", "/docs/oauth2-redirect")
PATH_SEGMENTS = st.sampled_from(
    (
        "HB",
        "HC",
        "HS",
        "ZZ",
        "%00",
        "%2F",
        "..",
        ".",
        "",
        "A" * 5000,
        "%F0%9F%98%80",
        "%C3%28",
        "%FF",
        "HC%27%3B--",
        "1001",
        "-1",
        str(10**30),
        "1e3",
        "%EF%BC%91",
        "player:1001",
        "agent:HC",
        "house:HC",
        "issuance:USD",
        "player:-1",
        "player:%EF%BC%91",
        "agent:",
        ":",
        "x" * 200 + ":y",
    )
)
PATH_TEMPLATES = (
    "/v1/agents/{}",
    "/v1/agents/{}/children",
    "/v1/agents/{}/transactions",
    "/v1/agents/{}/ggr",
    "/v1/users/{}",
    "/v1/users/{}/transactions",
    "/v1/balances/{}",
    "/v1/{}",
    "/v1/agents/{}/../HC",
    "//v1//agents//{}",
    "/v2/agents/{}",
    "/health",
    "/{}",
)
NUMBERS = ("-1", "0", "1", "2000", "2001", str(10**30), "abc", "", "1.5", "1e3", " 5", "NaN")
PARAMETER_VALUES = {
    "limit": (*NUMBERS, "%EF%BC%95", "0x10"),
    "cursor": ("", "====", "czEyMw", "YwA", "c" * 5000, "%FF", "czk5OTk5OTk5OTk5OTk5OTk5OTk5OQ"),
    "asOf": (*NUMBERS, str(10**12), "now"),
    "minSequence": ("-1", "0", str(10**30), "soon", "", "1.5"),
    "from": (*NUMBERS, "2025-13-01", "0001-01-01", "9999-12-31", "x"),
    "to": (*NUMBERS, "2025-02-30", "9999-12-31"),
}
REQUEST_IDS = (None, "req-1", "", "x" * 129, "x" * 128, "caf\u00e9", "tab\there", "\u00ff" * 10)


@dataclass(frozen=True)
class HttpCase:
    method: str
    path: str
    query: str
    authorization: str | None  # "{HB}" / "{HC}" stand for that agent's token
    request_id: str | None


@st.composite
def http_cases(draw: st.DrawFn) -> HttpCase:
    template = draw(st.sampled_from(PATH_TEMPLATES))
    path = template.format(draw(PATH_SEGMENTS)) if "{}" in template else template
    names = draw(st.lists(st.sampled_from(sorted(PARAMETER_VALUES)), max_size=3))
    query = "&".join(f"{n}={draw(st.sampled_from(PARAMETER_VALUES[n]))}" for n in names)
    authorization = draw(
        st.sampled_from(
            (
                "Bearer {HB}",
                "Bearer {HB}",
                "Bearer {HC}",
                "bearer {HC}",
                None,
                "Bearer",
                "Bearer  {HB}",
                "Bearer {HB} extra",
                "Basic aGI6aGI=",
                "Bearer " + "x" * 300,
                "Bearer lgr_" + "A" * 43,
                "Bearer caf\u00e9",
                "{HB}",
            )
        )
    )
    method = draw(st.sampled_from(("GET",) * 12 + ("POST", "PUT", "DELETE", "PATCH", "OPTIONS")))
    return HttpCase(method, path, query, authorization, draw(st.sampled_from(REQUEST_IDS)))


def draw_http_cases(count: int) -> list[HttpCase]:
    cases: list[HttpCase] = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=http_cases())
    def collect(case: HttpCase) -> None:
        cases.append(case)

    for _ in range(FEED_ROUNDS_MAX):
        if len(cases) >= count:
            break
        collect()
    return cases[:count]


@pytest.fixture
def http_sample(request: pytest.FixtureRequest) -> list[HttpCase]:
    """Drawn before the API's threads run (see kafka_sample)."""
    scale: InputScale = request.node.callspec.params["scale"]
    return draw_http_cases(scale.http)


@pytest.fixture
def read_side(dedicated: DedicatedServices, fault_schema: str) -> Iterator[ReadSide]:
    """The hostile world's views and API, with a short minSequence wait."""
    with serve_hostile_world(dedicated.database_url, fault_schema, wait_ms=200) as served:
        yield served


def _check_response(case: HttpCase, response: Any, sent_request_id: str | None) -> str:
    """Why this response breaks the contract ("" when it does not)."""
    status = response.status_code
    if status >= 500 and not (status == 503 and "minSequence" in case.query):
        return f"status {status}"
    echoed = response.headers.get("X-MGP-REQ-ID", "")
    if sent_request_id and 0 < len(sent_request_id.strip()) <= 128 and sent_request_id.isascii():
        printable = sent_request_id.strip().isprintable()
        if printable and echoed != sent_request_id.strip():
            return f"request id {echoed!r} not echoed"
    if not echoed:
        return "no X-MGP-REQ-ID"
    if not response.headers.get("X-MGP-RESPONSE-TIME", "").isdigit():
        return "no X-MGP-RESPONSE-TIME"
    if case.method == "OPTIONS" or response.url.path in NON_ENVELOPE_PATHS:
        return ""
    try:
        body = response.json()
    except ValueError:
        return "body is not JSON"
    if not isinstance(body, dict) or set(body) != {"code", "message", "data"}:
        return f"not the envelope: {str(body)[:200]}"
    if body["code"] not in CONTRACT_CODES or not isinstance(body["data"], dict):
        return f"code {body['code']}"
    if HTTP_STATUS[Code(body["code"])] != status:
        return f"status {status} for code {body['code']}"
    if status == 503 and body["code"] != Code.INTERNAL_SERVER_ERROR:
        return "503 without 1001"
    return ""


@pytest.mark.parametrize("scale", SCALES)
def test_hostile_http_requests_get_the_envelope_and_never_a_5xx_but_the_documented_503(
    scale: InputScale,
    http_sample: list[HttpCase],
    read_side: ReadSide,
) -> None:
    started = time.monotonic()
    server, tokens = read_side.server, read_side.tokens
    statuses: Counter[int] = Counter()
    broken: list[tuple[HttpCase, str]] = []
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        for case in http_sample:
            headers: list[tuple[bytes, bytes]] = []
            if case.authorization is not None:
                text = case.authorization.format(**tokens)
                headers.append((b"Authorization", text.encode("latin-1")))
            if case.request_id is not None:
                headers.append((b"X-MGP-REQ-ID", case.request_id.encode("latin-1")))
            url = httpx.URL(server.url + case.path + ("?" + case.query if case.query else ""))
            response = http.request(case.method, url, headers=headers)
            statuses[response.status_code] += 1
            why = _check_response(case, response, case.request_id)
            if why:
                broken.append((case, f"{why}: {response.status_code} {response.text[:200]}"))
        assert http.get("/health").status_code == 200  # still serving

    assert broken == []
    assert statuses[200] > 0 and statuses[400] > 0 and statuses[401] > 0 and statuses[404] > 0
    record(
        f"bad input over http[{scale.name}]",
        {
            "bad_inputs": len(http_sample),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "server_errors": sum(v for k, v in statuses.items() if k >= 500 and k != 503),
            "crashes": 0,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
