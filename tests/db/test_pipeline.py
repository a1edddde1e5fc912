"""A StatementBatch sends its statements and the COMMIT together, and keeps the transaction whole:
what the session has pending goes first, in the same transaction, and one failing statement stores
nothing at all."""

import psycopg
import pytest
from sqlalchemy import func, select, text

from app.db.models import Project
from app.db.pipeline import Jsonb, StatementBatch

INSERT_PROJECT = "INSERT INTO projects (name, label_schema) VALUES (%(name)s, %(schema)s)"


def _names(sessions) -> list[str]:
    with sessions() as db:
        return list(db.scalars(select(Project.name).order_by(Project.name)))


def test_a_batch_commits_its_statements_and_what_the_session_had_pending(sessions):
    with sessions.begin() as db:
        db.add(Project(name="pending in the session", label_schema={}))
        batch = StatementBatch()
        batch.add(INSERT_PROJECT, {"name": "one", "schema": Jsonb({"entity_types": []})})
        batch.add(
            INSERT_PROJECT, [{"name": "two", "schema": Jsonb({})}, {"name": "three", "schema": Jsonb({})}]
        )
        assert batch
        batch.send(db, commit=True)
        assert not batch  # sent, nothing left queued
    # The session's own commit after it found nothing left to do, and every row is stored.
    assert _names(sessions) == ["one", "pending in the session", "three", "two"]
    with sessions() as db:
        assert db.scalar(select(Project.label_schema).where(Project.name == "one")) == {"entity_types": []}
        # All four in one transaction: the session's pending row was not left for a later one.
        assert db.scalar(text("SELECT count(DISTINCT xmin::text) FROM projects")) == 1


def test_statements_run_in_order_each_seeing_the_ones_before(sessions):
    with sessions.begin() as db:
        batch = StatementBatch()
        batch.add(INSERT_PROJECT, {"name": "first", "schema": Jsonb({})})
        batch.add("UPDATE projects SET guidelines = 'seen' WHERE name = %(name)s", {"name": "first"})
        batch.send(db, commit=True)
    with sessions() as db:
        assert db.scalar(select(Project.guidelines).where(Project.name == "first")) == "seen"


def test_one_failing_statement_stores_nothing(sessions):
    with pytest.raises(psycopg.errors.UniqueViolation), sessions.begin() as db:
        db.add(Project(name="pending in the session", label_schema={}))
        batch = StatementBatch()
        batch.add(INSERT_PROJECT, {"name": "stored before the error?", "schema": Jsonb({})})
        batch.add(INSERT_PROJECT, [{"name": "twice", "schema": Jsonb({})}] * 2)
        batch.send(db, commit=True)
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(Project)) == 0


def test_a_batch_sent_without_commit_stays_in_the_transaction(sessions):
    with sessions() as db:
        batch = StatementBatch()
        batch.add(INSERT_PROJECT, {"name": "not committed", "schema": Jsonb({})})
        batch.send(db)
        assert db.scalar(select(Project.name)) == "not committed"  # seen inside the transaction
        db.rollback()
    assert _names(sessions) == []
