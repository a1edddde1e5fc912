"""Every setting of clinann, read from the environment with the prefix ``CLINANN_``.

The README's settings table lists each field below; a test keeps the two in step.
"""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, IPvAnyNetwork, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The repository root: templates/, static/ and migrations/ live beside app/.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingError(ValueError):
    """A setting names something clinann will not use; the message says which and why (and never
    repeats a secret). The command line prints it without a traceback."""


class Settings(BaseSettings):
    """Settings for the server, the worker and the command line."""

    model_config = SettingsConfigDict(env_prefix="CLINANN_", env_file=None, extra="ignore")

    database_url: str | None = Field(
        default=None,
        description=(
            "PostgreSQL URL (postgresql+psycopg://user:pass@host/db). Unset: clinann starts an "
            "embedded PostgreSQL in data_dir and stops it on exit."
        ),
    )
    data_dir: Path = Field(
        default=Path(".clinann"),
        description="Directory of the embedded PostgreSQL cluster (and other local state).",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "Key that signs session cookies and CSRF tokens. Unset: a random key is generated "
            "once and kept in data_dir/secret_key."
        ),
    )
    session_idle_minutes: int = Field(
        default=30, ge=1, description="A login session ends after this many minutes without a request."
    )
    session_max_hours: int = Field(
        default=12, ge=1, description="A login session ends this many hours after login, active or not."
    )
    cookie_secure: bool = Field(
        default=False,
        description="Send the session cookie only over HTTPS. Turn on behind TLS in production.",
    )
    login_max_failures: int = Field(
        default=5,
        ge=1,
        description=(
            "Failed logins for one user name from one address allowed per window; the last one blocks "
            "that pair (only) for login_block_minutes."
        ),
    )
    login_failure_window_minutes: int = Field(
        default=15, ge=1, description="Window over which failed logins are counted for throttling."
    )
    login_block_minutes: int = Field(
        default=15,
        ge=1,
        description="How long a user name stays blocked from one address after login_max_failures failures.",
    )
    login_slow_after_failures: int = Field(
        default=10,
        ge=1,
        description=(
            "Failed logins for one user name (from all addresses), or from one address (for all names), "
            "per window after which each further failure is answered later and later."
        ),
    )
    login_max_delay_seconds: float = Field(
        default=10, ge=0, description="Longest a failed login waits for its answer."
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default=[],
        description=(
            'Addresses or networks (JSON list, e.g. ["10.0.0.0/8"]) of reverse proxies whose '
            "X-Forwarded-For and X-Forwarded-Proto are believed. Empty: the peer's address is the client's."
        ),
    )
    upload_max_file_mb: float = Field(
        default=5, gt=0, description="Largest single note (or .ann) file accepted in an upload, in MB."
    )
    upload_max_batch_mb: float = Field(
        default=200, gt=0, description="Largest upload (all files, zip contents uncompressed), in MB."
    )
    upload_max_documents: int = Field(default=20_000, ge=1, description="Most notes in one batch.")
    zip_max_ratio: float = Field(
        default=100, gt=1, description="Largest uncompressed/compressed ratio of a zip entry (zip bombs)."
    )
    host: str = Field(default="127.0.0.1", description="Address `clinann serve` listens on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `clinann serve` listens on.")
    worker_concurrency: int = Field(default=2, ge=1, description="Jobs one worker runs at the same time.")
    worker_heartbeat_seconds: float = Field(
        default=10, gt=0, description="How often a worker tells the queue it is alive."
    )
    stalled_worker_seconds: float = Field(
        default=60,
        gt=0,
        description="A worker silent this long is taken for dead and its jobs are queued again.",
    )
    db_pool_size: int = Field(default=10, ge=1, description="Database connections kept per process.")
    log_level: str = Field(default="info", description="Log level: debug, info, warning, error.")


@lru_cache
def get_settings() -> Settings:
    return Settings()
