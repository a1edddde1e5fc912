"""Helpers for the end-to-end tests: start and stop `clinann demo`, log in with Chromium."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.settings import PROJECT_ROOT

CHROMIUM = os.environ.get("CLINANN_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SECRET_KEY = "e2e-secret-key-not-for-production"
STARTUP_SECONDS = 60
STOP_SECONDS = 30


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_log(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "<no output>"


def start_demo(env: dict[str, str], port: int, log_path: Path, *extra: str) -> subprocess.Popen:
    """Start `clinann demo` with its stdout and stderr going to ``log_path``."""
    log = log_path.open("wb")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "demo", "--host", "127.0.0.1", "--port", str(port), *extra],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        log.close()  # the child keeps its own descriptor


def wait_until_up(process: subprocess.Popen, base_url: str, log_path: Path, timeout: float) -> None:
    """Poll GET /login until it answers 200; fail with the process output otherwise."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"`clinann demo` exited with {process.returncode} before serving:\n{read_log(log_path)}"
            )
        try:
            response = httpx.get(f"{base_url}/login", timeout=2)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.25)
    stop(process)
    pytest.fail(f"`clinann demo` did not serve /login within {timeout:.0f} s ({last}):\n{read_log(log_path)}")


def stop(process: subprocess.Popen, timeout: float = STOP_SECONDS) -> int | None:
    """SIGTERM, wait; SIGKILL if it hangs. Return the exit code (None if it had to be killed)."""
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        return None


def demo_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINANN_")}
    env.update(values)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def log_in(page, username: str, password: str) -> None:
    """Fill and submit the login form; wait for the navigation it causes."""
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("[data-testid=login-submit]")
