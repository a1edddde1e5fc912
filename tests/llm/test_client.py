"""The chat client against the fake server over real HTTP: retries, backoff, fallbacks, limits, headers."""

import asyncio
import random
import socket

import pytest

from app.domain.label_schema import parse_label_schema
from app.llm.client import (
    MAX_BACKOFF_SECONDS,
    ChatClient,
    Completion,
    EndpointConfig,
    LlmError,
    RetryableLlmError,
)
from app.llm.fake_server import FakeBehaviour, FakeLlmServer, GoldNote

NOTE = GoldNote("Aspirin 81 mg daily.", [("Drug", 0, 7), ("Strength", 8, 13)], [("Strength-Drug", 1, 0)])
SCHEMA = parse_label_schema({"entity_types": [{"name": n, "color": "#1f77b4"} for n in ("Drug", "Strength")]})
CHUNK = "Aspirin 81 mg"
MESSAGES = [
    {"role": "system", "content": "You are a medical assistant. Answer with one line per token."},
    {"role": "user", "content": f"Text:\n<<<\n{CHUNK}\n>>>"},
]
JSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "iob_token", "schema": {}, "strict": True}}


class Sleeps:
    """An injected sleep that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def serve():
    started: list[FakeLlmServer] = []

    def start(**behaviour) -> FakeLlmServer:
        server = FakeLlmServer([NOTE], SCHEMA, FakeBehaviour(**behaviour))
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _complete(config: EndpointConfig, sleeps: Sleeps | None = None, **options) -> Completion:
    async def run() -> Completion:
        async with ChatClient(config, sleep=sleeps or Sleeps(), rng=random.Random(1)) as client:
            return await client.complete(MESSAGES, **options)

    return asyncio.run(run())


def _config(server: FakeLlmServer, **fields) -> EndpointConfig:
    return EndpointConfig(**{"base_url": server.base_url, "model": "m", "api_key": "sk-secret", **fields})


def test_an_answer_comes_with_its_usage_and_one_attempt(serve):
    server = serve()
    completion = _complete(_config(server))
    assert completion.text == "Aspirin\tB-Drug\t1\n81\tB-Strength\t1\nmg\tI-Strength\t1"
    assert (completion.attempts, completion.model) == (1, "clinann-fake")
    assert completion.prompt_tokens and completion.prompt_tokens > 10
    assert completion.completion_tokens and completion.latency_ms > 0


@pytest.mark.parametrize(
    ("behaviour", "expected_delays"),
    [
        # Exponential backoff from backoff_seconds, plus at most 10% jitter.
        ({"fail_first": 2}, [(1.0, 1.1), (2.0, 2.2)]),
        ({"fail_first": 3, "fail_first_status": 503}, [(1.0, 1.1), (2.0, 2.2), (4.0, 4.4)]),
        # Retry-After on a 429 is what the server asked for, exactly.
        ({"fail_first": 2, "fail_first_status": 429, "retry_after_seconds": 7}, [(7, 7), (7, 7)]),
        # A 429 without Retry-After backs off like a 500.
        ({"fail_first": 1, "fail_first_status": 429}, [(1.0, 1.1)]),
    ],
)
def test_429_and_5xx_are_retried_with_backoff(serve, behaviour, expected_delays):
    server = serve(**behaviour)
    sleeps = Sleeps()
    completion = _complete(_config(server), sleeps)
    assert completion.attempts == len(expected_delays) + 1 == server.request_count
    assert len(sleeps.delays) == len(expected_delays)
    for delay, (low, high) in zip(sleeps.delays, expected_delays, strict=True):
        assert low <= delay <= high


def test_attempts_run_out_with_a_retryable_error_that_names_the_status_not_the_note(serve):
    server = serve(fail_first=10)
    sleeps = Sleeps()
    with pytest.raises(RetryableLlmError) as raised:
        _complete(_config(server, max_attempts=3), sleeps)
    assert server.request_count == 3 and len(sleeps.delays) == 2
    assert "500" in str(raised.value) and "3 attempts" in str(raised.value)
    assert CHUNK not in str(raised.value) and "sk-secret" not in str(raised.value)


def test_a_time_out_is_retried(serve):
    server = serve(hang_first=1, hang_seconds=3)
    completion = _complete(_config(server, timeout_seconds=0.2))
    assert completion.attempts == 2 == server.request_count


def test_a_connection_error_is_retried_then_fails(serve):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    config = EndpointConfig(f"http://127.0.0.1:{port}/v1", "m", None, max_attempts=2)
    with pytest.raises(RetryableLlmError, match="connection failed"):
        _complete(config, sleeps)
    assert len(sleeps.delays) == 1


def test_a_200_body_that_is_no_chat_completion_is_retried(serve):
    server = serve(malformed_first=1)
    completion = _complete(_config(server))
    assert completion.attempts == 2 and completion.text.startswith("Aspirin\tB-Drug")


def test_400_to_structured_output_falls_back_once_and_is_remembered(serve):
    server = serve(structured_output=False)

    async def run() -> tuple[list[Completion], bool]:
        async with ChatClient(_config(server), sleep=Sleeps()) as client:
            assert client.structured_supported
            first = await client.complete(MESSAGES, response_format=JSON_FORMAT)
            second = await client.complete(MESSAGES, response_format=JSON_FORMAT)
            return [first, second], client.structured_supported

    (first, second), supported = asyncio.run(run())
    assert not supported
    assert (first.attempts, second.attempts) == (2, 1)
    assert [seen.structured for seen in server.requests_seen] == [True, False, False]
    assert first.text.startswith("Aspirin\tB-Drug")  # the text form, since no JSON was asked for


def test_the_structured_fallback_does_not_use_up_the_attempts(serve):
    # 400 (the format refused), then a 500 for the text-form request, then the answer: 3 requests.
    server = serve(structured_output=False, fail_first=2)
    completion = _complete(_config(server, max_attempts=2), response_format=JSON_FORMAT)
    assert completion.attempts == 3 == server.request_count
    assert [served.status for served in server.served] == [400, 500, 200]


def test_structured_output_switched_off_in_the_config_is_never_sent(serve):
    server = serve()
    _complete(_config(server, structured_output=False), response_format=JSON_FORMAT)
    assert [seen.structured for seen in server.requests_seen] == [False]


@pytest.mark.parametrize(("status", "hint"), [(401, "API key"), (404, "base URL"), (422, "")])
def test_other_4xx_fail_at_once(serve, status, hint):
    server = serve(errors={status: 1.0})
    sleeps = Sleeps()
    with pytest.raises(LlmError) as raised:
        _complete(_config(server), sleeps)
    assert not isinstance(raised.value, RetryableLlmError)
    assert server.request_count == 1 and sleeps.delays == []
    assert str(status) in str(raised.value) and hint in str(raised.value)


def test_a_400_without_response_format_is_not_a_fallback(serve):
    server = serve(errors={400: 1.0})
    with pytest.raises(LlmError, match="400"):
        _complete(_config(server), response_format=JSON_FORMAT)
    assert server.request_count == 2  # the request with the format, then the one without; no more


def test_concurrency_is_limited_per_endpoint(serve):
    server = serve(latency_ms=100)
    config = _config(server, max_concurrency=2)

    async def run() -> list[Completion]:
        # Two clients of one endpoint share the limit: it is the endpoint's, not the client's.
        async with ChatClient(config) as one, ChatClient(config) as two:
            return await asyncio.gather(*(client.complete(MESSAGES) for client in [one, two] * 4))

    completions = asyncio.run(run())
    assert len(completions) == 8 == server.request_count
    assert server.max_in_flight == 2


def test_keep_runs_on_each_answer_while_its_request_still_holds_the_endpoints_slot(serve):
    """What the response cache relies on: with a limit of 1, the next request waits until the answer
    before it has been kept, so a crash never loses more unkept answers than the limit."""
    server = serve(latency_ms=20)
    config = _config(server, max_concurrency=1)
    kept: list[int] = []

    async def run() -> None:
        async def keep(completion: Completion) -> None:
            await asyncio.sleep(0.1)  # a slow cache write
            kept.append(server.request_count)  # no further request reached the server meanwhile

        async with ChatClient(config) as client:
            await asyncio.gather(*(client.complete(MESSAGES, keep=keep) for _ in range(3)))

    asyncio.run(run())
    assert kept == [1, 2, 3]


@pytest.mark.parametrize(
    ("fields", "scheme", "api_key_header", "api_version"),
    [
        ({}, "Bearer", False, None),
        ({"api_key": None}, None, False, None),
        ({"azure_api_version": "2024-06-01"}, None, True, "2024-06-01"),
    ],
)
def test_the_key_is_sent_as_the_endpoint_expects(serve, fields, scheme, api_key_header, api_version):
    server = serve()
    _complete(_config(server, **fields))
    (seen,) = server.requests_seen
    assert (seen.auth_scheme, seen.api_key_header, seen.api_version) == (scheme, api_key_header, api_version)
    assert seen.path == "/v1/chat/completions" and seen.model == "m"


def test_connection_test_reports_success_or_raises(serve):
    good, bad = serve(), serve(errors={401: 1.0})

    async def run(server: FakeLlmServer) -> str:
        async with ChatClient(_config(server), sleep=Sleeps()) as client:
            return await client.test_connection()

    result = asyncio.run(run(good))
    assert "clinann-fake" in result and "'OK'" in result
    with pytest.raises(LlmError, match="401"):
        asyncio.run(run(bad))
    assert bad.request_count == 1


@pytest.mark.parametrize(("retry", "low", "high"), [(0, 1.0, 1.1), (3, 8.0, 8.8), (20, 60.0, 66.0)])
def test_backoff_doubles_and_is_capped(retry, low, high):
    client = ChatClient(EndpointConfig("http://127.0.0.1:9/v1", "m", None), rng=random.Random(3))
    assert low <= client.backoff_delay(retry) <= high
    assert MAX_BACKOFF_SECONDS == 60.0
    asyncio.run(client.aclose())
