"""`clinann serve` believes no X-Forwarded-For by default (issue 17, finding 4).

uvicorn's proxy_headers trusted the header from 127.0.0.1, so behind docker-compose's port mapping or a
local proxy any client chose the address that the audit trail records and the login throttle counts.
This runs the real server and sends a forged header from loopback.
"""

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import psycopg

from tests.test_serve_workers import ROOT, _free_port


def test_a_forged_forwarded_for_from_loopback_is_not_the_client(postgres, tmp_path):
    url = postgres.create_database("clinann_serve_address")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINANN_")}
    env.update(CLINANN_DATABASE_URL=url, CLINANN_SECRET_KEY="address-test", CLINANN_DATA_DIR=str(tmp_path))
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--no-worker", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=base, timeout=5) as client:
            while True:
                assert process.poll() is None, process.stdout.read().decode()[-2000:]
                try:
                    form = client.get("/login")
                    if form.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.3)
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
            answer = client.post(
                "/login",
                data={"username": "nobody", "password": "wrong-password-here", "csrf_token": token},
                headers={"X-Forwarded-For": "6.6.6.6"},
            )
            assert answer.status_code in (200, 401, 422)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    libpq = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq) as connection:
        recorded = connection.execute(
            "SELECT client_address FROM audit_events WHERE action = 'login.failure'"
        ).fetchall()
    assert recorded == [("127.0.0.1",)]
