"""CLINANN_DATABASE_URL: a server reached over the network with a guessable password is refused, with
a message that names the host and never the password; docker-compose ships no default password."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from app.db.engine import open_database, sqlalchemy_url, weak_network_password
from app.settings import SettingError, Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
STRONG = secrets.token_hex(24)


def _compose_database_url(password: str) -> str:
    """The app's CLINANN_DATABASE_URL as docker compose writes it, with POSTGRES_PASSWORD set."""
    line = next(line for line in COMPOSE.read_text().splitlines() if "CLINANN_DATABASE_URL:" in line)
    template = line.split("CLINANN_DATABASE_URL:", 1)[1].strip()
    return re.sub(r"\$\{POSTGRES_PASSWORD[^}]*\}", password, template)


def test_compose_has_no_default_for_any_secret():
    text = COMPOSE.read_text()
    references = re.findall(r"\$\{(POSTGRES_PASSWORD|CLINANN_SECRET_KEY)([^}]*)\}", text)
    assert len(references) >= 5, references  # postgres, and the app's and the worker's URL and key
    for name, rest in references:
        assert rest.startswith(":?"), f"${{{name}{rest}}}: compose must refuse to start without it"
    assert "clinann}" not in text and ":-" not in text


def test_compose_with_its_old_default_password_is_refused():
    with pytest.raises(SettingError) as refused:
        open_database(Settings(database_url=_compose_database_url("clinann")))
    assert "server at postgres is refused" in str(refused.value) and ":clinann@" not in str(refused.value)


@pytest.mark.parametrize(
    "password", ["clinann", "postgres", "secret", "Password123", "clinann2026!", "a" * 40]
)
def test_a_guessable_password_over_the_network_is_refused(password):
    url = sqlalchemy_url(f"postgresql://clinann:{password}@db.internal:5432/clinann")
    refusal = weak_network_password(url)
    assert refusal is not None and "at db.internal" in refusal and "openssl rand" in refusal
    assert password not in refusal.replace("POSTGRES_PASSWORD", "")  # the host is named; the password never
    with pytest.raises(SettingError) as refused:
        open_database(Settings(database_url=url))
    assert str(refused.value) == refusal


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://clinann:{STRONG}@postgres:5432/clinann",  # long and random, over the network
        "postgresql://clinann:clinann@localhost/clinann",  # loopback: the operator's business
        "postgresql://clinann:clinann@127.0.0.1:5432/clinann",
        "postgresql://clinann:clinann@[::1]:5432/clinann",
        "postgresql://clinann:clinann@/clinann?host=/var/run/postgresql",  # a Unix socket
        "postgresql://clinann@db.internal/clinann",  # no password: .pgpass or client certificates
    ],
)
def test_strong_loopback_socket_or_no_password_is_accepted(url):
    assert weak_network_password(sqlalchemy_url(url)) is None


def test_a_url_that_does_not_parse_is_named_without_its_password():
    with pytest.raises(SettingError) as refused:
        sqlalchemy_url("postgresql://clinann:hunter2-secret@db:notaport/clinann")
    assert "hunter2" not in str(refused.value) and "CLINANN_DATABASE_URL" in str(refused.value)
    with pytest.raises(SettingError, match="must be a PostgreSQL URL, not mysql"):
        sqlalchemy_url("mysql://root:pw@db/clinann")


def test_serve_refuses_a_weak_password_with_an_error_not_a_traceback(tmp_path):
    environment = {
        **os.environ,
        "CLINANN_DATABASE_URL": _compose_database_url("clinann"),
        "CLINANN_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.startswith("error: CLINANN_DATABASE_URL: the password"), result.stderr
    assert "Traceback" not in result.stderr and ":clinann@" not in result.stderr
