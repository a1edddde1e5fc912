"""The only way clinann talks to a language model: the OpenAI-compatible chat-completions API.

Works with vLLM, Ollama, llama.cpp server, TGI, OpenAI and Azure OpenAI. Requests are retried with
exponential backoff on 429, 5xx, time-outs, connection errors and 200 answers whose body is not a
chat completion; any other 4xx fails at once. Concurrency is limited per (base URL, model) by a
semaphore shared by every client of the same *worker process* (two worker processes may each send
``max_concurrency`` requests at the same time).

Notes are patient data even when de-identified: nothing here logs or raises with message contents,
prompts or answers; logs and errors carry status codes, attempts and latencies only.
"""

import asyncio
import json
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

logger = logging.getLogger(__name__)

# A retry never waits longer than this, whatever the backoff doubling or a Retry-After header says:
# a worker stuck for an hour on one chunk is worse than a failed job that can be rerun.
MAX_BACKOFF_SECONDS = 60.0
# Jitter is at most this fraction of the delay, so many workers hit by one 429 do not come back together.
JITTER_FRACTION = 0.1
# What the admin's "test connection" button sends: tiny, so it costs nothing on a paid endpoint.
CONNECTION_PROBE = [{"role": "user", "content": "Reply with the single word OK."}]

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class EndpointConfig:
    """Where and how to reach one model; ``base_url`` ends before ``/chat/completions`` (``.../v1``)."""

    base_url: str
    model: str
    api_key: str | None
    timeout_seconds: float = 60
    max_concurrency: int = 4
    max_attempts: int = 5
    backoff_seconds: float = 1.0
    structured_output: bool = True
    azure_api_version: str | None = None


@dataclass(frozen=True)
class Completion:
    """The model's answer and what it cost; ``latency_ms`` is the successful request's round trip."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float
    attempts: int
    model: str


class LlmError(Exception):
    """The endpoint did not give an answer; the message names the status or cause, never the prompt."""


class RetryableLlmError(LlmError):
    """Every attempt failed for a reason that may pass (429, 5xx, time-out...): the job may be rerun later."""


# Semaphores are bound to the event loop they first wait on, so they are kept per loop; a worker has one
# loop, tests that call asyncio.run repeatedly get a fresh set each time.
_Limits = dict[tuple[str, str], tuple[int, asyncio.Semaphore]]  # (base URL, model) -> (limit, semaphore)
_SEMAPHORES: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Limits]" = weakref.WeakKeyDictionary()


def endpoint_semaphore(config: EndpointConfig) -> asyncio.Semaphore:
    """The process-wide semaphore limiting requests to one (base URL, model) in the running loop."""
    per_loop = _SEMAPHORES.setdefault(asyncio.get_running_loop(), {})
    key = (config.base_url.rstrip("/"), config.model)
    limit = max(1, config.max_concurrency)
    known = per_loop.get(key)
    # An admin who changes the limit should not need to restart the worker: requests already admitted
    # finish under the old semaphore, new ones queue on the new one.
    if known is None or known[0] != limit:
        known = (limit, asyncio.Semaphore(limit))
        per_loop[key] = known
    return known[1]


class _Retryable(Exception):
    """One attempt failed in a way worth retrying; ``delay`` is what the server asked for, if anything."""

    def __init__(self, cause: str, delay: float | None = None):
        super().__init__(cause)
        self.cause, self.delay = cause, delay


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds a 429/503 answer asks us to wait (only the delta-seconds form; a date is ignored)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parse_completion(response: httpx.Response) -> tuple[str, int | None, int | None, str | None]:
    """(text, prompt tokens, completion tokens, model) of a chat-completion body; ValueError if it is none."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError("body is not JSON") from error
    if not isinstance(body, dict):
        raise ValueError("body is not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("body has no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise ValueError("choice has no message")
    content = message.get("content")
    # A null content is a valid completion (a refusal, say): an empty answer, not a broken server.
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise ValueError("message content is not a string")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    model = body.get("model") if isinstance(body.get("model"), str) else None
    return (
        content,
        _int_or_none(usage.get("prompt_tokens")),
        _int_or_none(usage.get("completion_tokens")),
        model,
    )


_STATUS_HINTS = {
    401: "check the API key",
    403: "check the API key and its permissions",
    404: "check the base URL and the model name",
}


class ChatClient:
    """An async client for one endpoint; use ``async with ChatClient(config) as client``."""

    def __init__(
        self,
        config: EndpointConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ):
        self.config = config
        # Starts as configured; turns False, for this client, the first time the server refuses it.
        self.structured_supported = config.structured_output
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        params: dict[str, str] = {}
        if config.azure_api_version:
            params["api-version"] = config.azure_api_version
            if config.api_key:
                headers["api-key"] = config.api_key
        elif config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._http = httpx.AsyncClient(
            headers=headers, params=params, timeout=httpx.Timeout(config.timeout_seconds), transport=transport
        )

    async def __aenter__(self) -> "ChatClient":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    def backoff_delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first): doubling, capped, jittered."""
        delay = min(self.config.backoff_seconds * 2**retry, MAX_BACKOFF_SECONDS)
        return delay + self._rng.uniform(0, delay * JITTER_FRACTION)

    async def complete(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        response_format: dict[str, Any] | None = None,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        keep: Callable[[Completion], Awaitable[None]] | None = None,
    ) -> Completion:
        """Send a chat completion, retrying what may pass; LlmError (RetryableLlmError) if no answer came.

        ``keep`` runs on the answer while its request still holds the endpoint's slot: a caller that
        stores answers there (the response cache) never has more answers unstored than the endpoint's
        concurrency, so a crash loses at most that many.
        """
        return await self._complete(
            messages, response_format, temperature, max_tokens, self.config.max_attempts, keep
        )

    async def test_connection(self) -> str:
        """Ask a tiny question once; a short sentence for the admin, or LlmError saying what went wrong."""
        completion = await self._complete(CONNECTION_PROBE, None, 0.0, 5, max_attempts=1)
        # The probe's answer is not patient data, but a chatty model could still say a lot: keep it short.
        answer = " ".join(completion.text.split())[:40] or "(empty answer)"
        return (
            f"Connected to {completion.model} at {self.config.base_url}: "
            f"answered {answer!r} in {completion.latency_ms:.0f} ms."
        )

    async def _complete(
        self,
        messages: Sequence[dict[str, Any]],
        response_format: dict[str, Any] | None,
        temperature: float,
        max_tokens: int | None,
        max_attempts: int,
        keep: Callable[[Completion], Awaitable[None]] | None = None,
    ) -> Completion:
        attempts = 0
        retries = 0
        budget = max(1, max_attempts)
        while True:
            attempts += 1
            sent_format = response_format if self.structured_supported else None
            body: dict[str, Any] = {
                "model": self.config.model,
                "messages": list(messages),
                "temperature": temperature,
            }
            if max_tokens is not None:
                body["max_tokens"] = max_tokens
            if sent_format is not None:
                body["response_format"] = sent_format
            try:
                return await self._attempt(body, attempts, keep)
            except _Retryable as failure:
                cause, wait = failure.cause, failure.delay
            except _StructuredRefused:
                # A server without structured output answers 400 to response_format: say so once, retry
                # at once in text form, and never send it again from this client. The retry is not
                # counted against the attempts budget: nothing went wrong that waiting would fix.
                logger.warning("LLM %s refused structured output (400); using text answers", self._url)
                self.structured_supported = False
                budget += 1
                continue
            if attempts >= budget:
                logger.warning("LLM %s failed after %d attempts: %s", self._url, attempts, cause)
                raise RetryableLlmError(f"LLM endpoint {self._url}: {cause} (after {attempts} attempts)")
            delay = min(wait, MAX_BACKOFF_SECONDS) if wait is not None else self.backoff_delay(retries)
            retries += 1
            logger.info("LLM %s attempt %d: %s; retrying in %.2f s", self._url, attempts, cause, delay)
            await self._sleep(delay)

    async def _attempt(
        self, body: dict[str, Any], attempt: int, keep: Callable[[Completion], Awaitable[None]] | None = None
    ) -> Completion:
        """One HTTP request under the endpoint's concurrency limit, and ``keep`` on its answer."""
        async with endpoint_semaphore(self.config):
            completion = await self._exchange(body, attempt)
            if keep is not None:
                await keep(completion)
            return completion

    async def _exchange(self, body: dict[str, Any], attempt: int) -> Completion:
        """One HTTP request and its answer read (the caller holds the endpoint's slot)."""
        started = time.perf_counter()
        try:
            # httpx's time-out is per network operation; this bounds the whole exchange, so a server
            # trickling bytes cannot hold a worker forever.
            async with asyncio.timeout(self.config.timeout_seconds):
                response = await self._http.post(self._url, json=body)
        except (TimeoutError, httpx.TimeoutException):
            raise _Retryable(f"timed out after {self.config.timeout_seconds:g} s") from None
        except httpx.TransportError as error:
            raise _Retryable(f"connection failed ({type(error).__name__})") from None
        latency_ms = (time.perf_counter() - started) * 1000
        status = response.status_code
        logger.info("LLM %s attempt %d: status %d in %.0f ms", self._url, attempt, status, latency_ms)
        if status == 200:
            try:
                text, prompt_tokens, completion_tokens, model = _parse_completion(response)
            except ValueError as error:
                raise _Retryable(f"answered 200 but {error}") from None
            return Completion(
                text=text,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                latency_ms=latency_ms,
                attempts=attempt,
                model=model or self.config.model,
            )
        if status == 429 or status >= 500:
            delay = _retry_after(response) if status in (429, 503) else None
            raise _Retryable(f"answered {status} {response.reason_phrase}".rstrip(), delay)
        if status == 400 and "response_format" in body:
            raise _StructuredRefused()
        # Never the body: servers echo the request (the note) in their validation errors.
        hint = _STATUS_HINTS.get(status)
        reason = f"answered {status} {response.reason_phrase}".rstrip()
        logger.warning("LLM %s attempt %d: %s, not retried", self._url, attempt, reason)
        raise LlmError(f"LLM endpoint {self._url} {reason}" + (f": {hint}" if hint else ""))


class _StructuredRefused(Exception):
    """The server answered 400 to a request with response_format."""
