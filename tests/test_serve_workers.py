"""`clinann serve --workers 2`: several uvicorn worker processes on one database, each serving."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_with_two_workers_answers_from_two_processes(postgres, tmp_path):
    url = postgres.create_database("clinann_serve_workers")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINANN_")}
    env.update(CLINANN_DATABASE_URL=url, CLINANN_SECRET_KEY="workers-test", CLINANN_DATA_DIR=str(tmp_path))
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--workers", "2", "--no-worker", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/login", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.3)
        children = psutil.Process(process.pid).children(recursive=True)
        workers = [
            c
            for c in children
            if "multiprocessing" in " ".join(c.cmdline()) or "spawn" in " ".join(c.cmdline())
        ]
        assert len(workers) >= 2, [c.cmdline() for c in children]
        for _ in range(10):  # every answer is a real page, whichever worker took it
            assert httpx.get(f"http://127.0.0.1:{port}/login", timeout=5).status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
