"""Who the client is (issue 17, finding 4): X-Forwarded-For is believed only from a trusted proxy.

Before, uvicorn's proxy_headers trusted it from 127.0.0.1, which behind docker-compose's port mapping
or a local proxy is every client: a client chose the address the audit trail recorded and the login
throttle counted.
"""

import dataclasses
import ipaddress

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db.models import AuditEvent
from app.web.app import create_app
from app.web.proxies import client_address
from tests.conftest import log_in

TRUSTED = [ipaddress.ip_network("10.0.0.0/8")]


def test_the_header_is_ignored_from_an_untrusted_peer():
    assert client_address("203.0.113.7", ["6.6.6.6"], TRUSTED) == "203.0.113.7"
    assert client_address("127.0.0.1", ["6.6.6.6"], []) == "127.0.0.1"  # nobody trusted by default


def test_from_a_trusted_proxy_the_nearest_untrusted_hop_is_the_client():
    # The client wrote "6.6.6.6" itself; the proxy appended the address it really came from.
    assert client_address("10.0.0.2", ["6.6.6.6, 198.51.100.4"], TRUSTED) == "198.51.100.4"
    # Two trusted proxies in a row: the hop before them.
    assert client_address("10.0.0.2", ["198.51.100.4, 10.0.0.9"], TRUSTED) == "198.51.100.4"
    # A garbled hop cannot be vouched for: the nearest trusted hop stands.
    assert client_address("10.0.0.2", ["not-an-address"], TRUSTED) == "10.0.0.2"


def _login_address(sessions, username: str) -> str:
    with sessions() as db:
        return db.scalars(
            select(AuditEvent.client_address)
            .where(AuditEvent.action == "login.success", AuditEvent.username == username)
            .order_by(AuditEvent.id.desc())
        ).first()


def test_the_audit_trail_records_the_peer_unless_it_is_a_trusted_proxy(runtime, sessions, accounts, clock):
    forged = {"X-Forwarded-For": "6.6.6.6"}
    with TestClient(create_app(runtime, clock=clock), follow_redirects=False, client=("127.0.0.1", 5)) as web:
        web.headers.update(forged)
        assert log_in(web, "lead").status_code == 303
    assert _login_address(sessions, "lead") == "127.0.0.1"

    behind_proxy = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"trusted_proxies": TRUSTED})
    )
    with TestClient(
        create_app(behind_proxy, clock=clock), follow_redirects=False, client=("10.0.0.2", 5)
    ) as web:
        web.headers.update({"X-Forwarded-For": "6.6.6.6, 198.51.100.4"})
        assert log_in(web, "lead").status_code == 303
    assert _login_address(sessions, "lead") == "198.51.100.4"
