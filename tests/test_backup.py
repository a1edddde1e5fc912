"""A backup restored into an empty database gives the same annotations, edit log, audit trail and
figures (pg_dump / pg_restore, through `clinann db backup` and `clinann db restore`)."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from app.cli import main
from app.db.models import AnnotationSet, Assignment, AuditEvent, Project
from app.demo.seed import DEMO_PROJECT, seed_demo
from app.jobs import bind_runtime
from app.runtime import open_runtime
from app.services import editing
from app.services.backup import BackupError, restore
from app.services.exports import export_project
from app.services.metrics import project_metrics
from app.settings import Settings


def _runtime(url, tmp_path):
    return open_runtime(Settings(database_url=url, data_dir=tmp_path, secret_key="backup-test"))


def _state(sessions, project_id):
    """What a restore must give back: every layer of every note, the edit log, the audit, the figures."""
    report = project_metrics(sessions, project_id)
    report.pop("generated_at")
    with sessions() as db:
        trail = db.execute(
            select(AuditEvent.id, AuditEvent.action, AuditEvent.details).order_by(AuditEvent.id)
        ).all()
    return {
        "annotations": export_project(sessions, project_id, "jsonl", None, actor_id=None).content,
        "events": export_project(sessions, project_id, "events-jsonl", None, actor_id=None).content,
        "audit": [tuple(row) for row in trail],
        "report": report,
    }


def test_a_restored_backup_has_the_same_annotations_log_and_figures(
    postgres, runtime, tmp_path, monkeypatch, capsys
):
    source_url = postgres.create_database("clinann_backup_source")
    target_url = postgres.create_database("clinann_backup_target")
    monkeypatch.setattr("app.demo.seed.hash_password", lambda password: "not-a-real-hash")
    source = _runtime(source_url, tmp_path / "source")
    try:
        seed_demo(source.sessions)
        with source.sessions() as db:
            project_id = db.scalar(select(Project.id).where(Project.name == DEMO_PROJECT))
            set_id, user_id = db.execute(
                select(Assignment.annotation_set_id, Assignment.annotator_id)
                .join(AnnotationSet, AnnotationSet.id == Assignment.annotation_set_id)
                .where(AnnotationSet.status == "open")
                .order_by(Assignment.id)
            ).first()
        for kind in ("accept_all", "submit"):  # a physician's work in the edit log
            with source.sessions() as db:
                version = db.get(AnnotationSet, set_id).version
            request = editing.EditRequest(
                kind=kind, client_id=f"b-{kind}", page_session="p", version=version, monotonic_ms=1.0
            )
            editing.apply_edit(source.sessions, user_id, set_id, request, now=datetime.now(UTC))
        dump = tmp_path / "clinann.dump"
        monkeypatch.setenv("CLINANN_DATABASE_URL", source_url)
        assert main(["db", "backup", str(dump)]) == 0
    finally:
        source.close()
    assert dump.stat().st_size > 0 and "backup written" in capsys.readouterr().out
    source = _runtime(source_url, tmp_path / "source")
    target = None
    try:
        before = _state(source.sessions, project_id)
        assert before["audit"][-1][1] == "database.backup"  # the dump holds its own record
        monkeypatch.setenv("CLINANN_DATABASE_URL", target_url)
        assert main(["db", "restore", str(dump)]) == 0
        target = _runtime(target_url, tmp_path / "target")
        after = _state(target.sessions, project_id)
        assert after == before
        with target.sessions() as db:
            assert db.scalar(text("SELECT version_num FROM alembic_version")) is not None
        # A second restore into the now full database is refused and changes nothing.
        with pytest.raises(BackupError, match="restore into an empty database"):
            restore(target_url, dump)
    finally:
        source.close()
        if target is not None:
            target.close()
        bind_runtime(runtime)  # the test session's runtime again, for the jobs of later tests
