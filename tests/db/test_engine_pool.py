"""The pool tests a connection only after it sat idle (no round trip per checkout under load), and a
tested connection is handed out idle, or replaced when PostgreSQL dropped it meanwhile."""

import time

import psycopg
import pytest

from app.db import engine as engine_module
from app.db.engine import make_engine


@pytest.fixture
def pool(database_url, monkeypatch):
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.05)
    engine = make_engine(database_url, pool_size=1)
    yield engine
    engine.dispose()


def _backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def test_a_connection_tested_after_idling_is_handed_out_idle(pool):
    first = _backend_pid(pool)
    time.sleep(0.1)  # idle long enough to be tested at the next checkout
    with pool.connect() as connection:
        status = connection.connection.dbapi_connection.info.transaction_status
        assert status == psycopg.pq.TransactionStatus.IDLE  # the test's SELECT left no transaction open
        # so that a read outside a transaction (the login session's) can switch to autocommit
        assert (
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("SELECT 1").scalar()
            == 1
        )
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() == first  # the same one, kept


def test_a_connection_dropped_while_idle_is_replaced_before_it_is_used(pool, postgres):
    first = _backend_pid(pool)
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    time.sleep(0.1)
    assert _backend_pid(pool) != first  # no error: the dead connection was tested and replaced
