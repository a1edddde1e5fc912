"""LLM endpoints an admin configures: OpenAI-compatible chat completions, keys kept out of the database.

The API key is read from an environment variable named in the configuration, so the key is never
stored in plain text and never shown back; only whether that variable is set is shown.
"""

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import LlmEndpoint
from app.services import audit

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
# An endpoint's key comes only from a variable named so: any other name would let an admin make the
# server send, say, CLINANN_DATABASE_URL or CLINANN_SECRET_KEY as a bearer token to a URL of their
# choosing (issue 17, finding 6). Fixed rather than a setting: a prefix of "" or "CLINANN_" would undo it.
KEY_ENV_PREFIX = "CLINANN_LLM_KEY_"


def key_env_refusal(name: str) -> str | None:
    """Why ``name`` may not hold an endpoint's key (None when it may)."""
    if not _ENV_NAME.match(name):
        return "must be the NAME of an environment variable, not the key itself"
    if not name.startswith(KEY_ENV_PREFIX) or name == KEY_ENV_PREFIX:
        return f"must start with {KEY_ENV_PREFIX} (for example {KEY_ENV_PREFIX}OPENAI)"
    return None


def endpoint_key(api_key_env: str | None) -> str | None:
    """The key an endpoint sends: read now from its variable, and only from a variable that may hold one
    (an endpoint stored before the prefix rule sends no key rather than another secret)."""
    if not api_key_env or key_env_refusal(api_key_env):
        return None
    return os.environ.get(api_key_env)


DEFAULT_PARAMETERS: dict[str, Any] = {
    "max_concurrency": 4,
    "timeout_seconds": 60.0,
    "max_attempts": 5,
    "backoff_seconds": 1.0,
    "structured_output": True,
    "azure_api_version": None,
}


class EndpointError(ValueError):
    """A bad endpoint configuration; ``field`` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class EndpointForm:
    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    max_concurrency: int = 4
    timeout_seconds: float = 60.0
    structured_output: bool = True
    azure_api_version: str | None = None
    is_active: bool = True


@dataclass(frozen=True)
class EndpointView:
    id: int
    name: str
    base_url: str
    model: str
    api_key_env: str | None
    key_is_set: bool
    parameters: dict[str, Any]
    is_active: bool


def _checked(form: EndpointForm) -> EndpointForm:
    name = form.name.strip()
    if not name or len(name) > 100:
        raise EndpointError("name", "give a name of 1 to 100 characters")
    url = form.base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EndpointError("base_url", "must be an http:// or https:// URL such as http://gpu-host:8000/v1")
    if parts.query or parts.fragment:
        raise EndpointError("base_url", "must not carry a query or fragment")
    model = form.model.strip()
    if not model or len(model) > 200:
        raise EndpointError("model", "give the model name the server knows (1 to 200 characters)")
    env = (form.api_key_env or "").strip() or None
    if env is not None and (refusal := key_env_refusal(env)):
        raise EndpointError("api_key_env", refusal)
    if not 1 <= form.max_concurrency <= 256:
        raise EndpointError("max_concurrency", "must be between 1 and 256")
    if not 0 < form.timeout_seconds <= 3600:
        raise EndpointError("timeout_seconds", "must be above 0 and at most 3600")
    version = (form.azure_api_version or "").strip() or None
    return EndpointForm(
        name, url, model, env, form.max_concurrency, form.timeout_seconds, form.structured_output,
        version, form.is_active,
    )  # fmt: skip


def _parameters(form: EndpointForm) -> dict[str, Any]:
    return {
        **DEFAULT_PARAMETERS,
        "max_concurrency": form.max_concurrency,
        "timeout_seconds": form.timeout_seconds,
        "structured_output": form.structured_output,
        "azure_api_version": form.azure_api_version,
    }


def view(endpoint: LlmEndpoint) -> EndpointView:
    return EndpointView(
        id=endpoint.id,
        name=endpoint.name,
        base_url=endpoint.base_url,
        model=endpoint.model,
        api_key_env=endpoint.api_key_env,
        key_is_set=bool(endpoint_key(endpoint.api_key_env)),
        parameters={**DEFAULT_PARAMETERS, **(endpoint.parameters or {})},
        is_active=endpoint.is_active,
    )


def list_endpoints(sessions: sessionmaker[Session], *, active_only: bool = False) -> list[EndpointView]:
    """Every configured endpoint, by name."""
    with sessions() as db:
        query = select(LlmEndpoint).order_by(LlmEndpoint.name)
        if active_only:
            query = query.where(LlmEndpoint.is_active)
        return [view(e) for e in db.scalars(query)]


def get_endpoint(sessions: sessionmaker[Session], endpoint_id: int) -> EndpointView | None:
    with sessions() as db:
        endpoint = db.get(LlmEndpoint, endpoint_id)
        return view(endpoint) if endpoint else None


def save_endpoint(
    sessions: sessionmaker[Session],
    form: EndpointForm,
    *,
    user_id: int | None,
    endpoint_id: int | None = None,
    client_address: str | None = None,
) -> int:
    """Create or change an endpoint, audited; a bad field raises EndpointError and stores nothing."""
    form = _checked(form)
    with sessions.begin() as db:
        clash = db.scalar(select(LlmEndpoint.id).where(LlmEndpoint.name == form.name))
        if clash is not None and clash != endpoint_id:
            raise EndpointError("name", f"an endpoint named '{form.name}' exists")
        if endpoint_id is None:
            endpoint = LlmEndpoint(name=form.name)
            db.add(endpoint)
        else:
            endpoint = db.get(LlmEndpoint, endpoint_id)
            if endpoint is None:
                raise EndpointError("endpoint", f"no endpoint {endpoint_id}")
        before = {"base_url": endpoint.base_url, "model": endpoint.model, "parameters": endpoint.parameters}
        endpoint.name = form.name
        endpoint.base_url = form.base_url
        endpoint.model = form.model
        endpoint.api_key_env = form.api_key_env
        endpoint.parameters = _parameters(form)
        endpoint.is_active = form.is_active
        db.flush()
        audit.record(
            db,
            "llm_endpoint.created" if endpoint_id is None else "llm_endpoint.changed",
            user_id=user_id,
            object_type="llm_endpoint",
            object_id=endpoint.id,
            client_address=client_address,
            details={
                "name": form.name,
                "base_url": form.base_url,
                "model": form.model,
                "api_key_env": form.api_key_env,
                "parameters": endpoint.parameters,
                "before": before if endpoint_id is not None else None,
            },
        )
        return endpoint.id


def client_config(endpoint: EndpointView | LlmEndpoint):
    """The HTTP client's configuration for an endpoint, the key read from its environment variable now."""
    from app.llm.client import EndpointConfig

    parameters = {**DEFAULT_PARAMETERS, **(endpoint.parameters or {})}
    key = endpoint_key(endpoint.api_key_env)
    return EndpointConfig(
        base_url=endpoint.base_url,
        model=endpoint.model,
        api_key=key,
        timeout_seconds=float(parameters["timeout_seconds"]),
        max_concurrency=int(parameters["max_concurrency"]),
        max_attempts=int(parameters["max_attempts"]),
        backoff_seconds=float(parameters["backoff_seconds"]),
        structured_output=bool(parameters["structured_output"]),
        azure_api_version=parameters.get("azure_api_version"),
    )


async def test_connection(endpoint: EndpointView) -> tuple[bool, str]:
    """Ask the endpoint a tiny question; (worked, what to tell the admin). Never raises."""
    from app.llm.client import ChatClient, LlmError

    try:
        async with ChatClient(client_config(endpoint)) as client:
            return True, await client.test_connection()
    except LlmError as error:
        return False, str(error)
    except Exception as error:  # a connection test must report, not crash the page
        return False, f"{type(error).__name__}: {error}"
