"""A worker killed in the middle of a run: a restarted worker finishes it, each note written once.

Real processes: `clinann worker` is started, killed with SIGKILL (no clean-up of any kind) while
notes are in flight, and started again; the fake LLM answers over real HTTP on loopback.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from app.db.models import AnnotationSet, PreAnnotationResult, PreAnnotationRun
from app.llm.fake_server import FakeBehaviour, FakeLlmServer
from tests.services.test_pre_annotation import demo, demo_schema, endpoint, gold_notes, start, wait_for_run

__all__ = ["demo"]  # the fixture, imported for pytest
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _worker(settings, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINANN_")}
    env.update(
        CLINANN_DATABASE_URL=settings.database_url,
        CLINANN_DATA_DIR=str(settings.data_dir),
        CLINANN_SECRET_KEY="crash-test-secret",
        CLINANN_WORKER_HEARTBEAT_SECONDS="0.5",
        CLINANN_STALLED_WORKER_SECONDS="2",
        CLINANN_WORKER_CONCURRENCY="2",
        PYTHONUNBUFFERED="1",
    )
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _counts(sessions, run_id) -> dict[str, int]:
    with sessions() as db:
        return dict(
            db.execute(
                select(PreAnnotationResult.status, func.count())
                .where(PreAnnotationResult.run_id == run_id)
                .group_by(PreAnnotationResult.status)
            ).all()
        )


def test_a_killed_worker_is_replaced_and_the_run_completes_with_each_note_once(
    runtime, settings, sessions, demo, tmp_path
):
    notes, gold, _ = gold_notes(sessions, demo)
    concurrency = 4
    with FakeLlmServer(notes, demo_schema(sessions, demo), FakeBehaviour(latency_ms=120)) as fake:
        endpoint_id = endpoint(sessions, fake.base_url, max_concurrency=concurrency)
        run_id = start(sessions, demo, endpoint_id, prompt_schema="direct_chunk", few_shot=0)
        log_path = tmp_path / "worker.log"
        first = _worker(settings, log_path)
        try:
            deadline = time.monotonic() + 90
            # Kill only while a note is being worked on (never in the instant between two notes).
            while (counts := _counts(sessions, run_id)).get("succeeded", 0) < 3 or not counts.get("running"):
                assert first.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
            os.killpg(first.pid, signal.SIGKILL)  # mid-run: notes are being worked on right now
            first.wait(10)
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
        at_kill = _counts(sessions, run_id)
        assert at_kill.get("running", 0) >= 1, at_kill  # the crash left notes half done
        assert at_kill.get("succeeded", 0) < len(notes)

        second = _worker(settings, log_path)
        try:
            assert wait_for_run(sessions, run_id, timeout=120) == "succeeded", log_path.read_text()
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(30)
        asked_twice = [key for key, count in fake.prompt_counts.items() if count > 1]

    with sessions() as db:
        sets_per_note = db.execute(
            select(AnnotationSet.document_id, func.count())
            .where(AnnotationSet.pre_annotation_run_id == run_id)
            .group_by(AnnotationSet.document_id)
        ).all()
        attempts = list(
            db.scalars(select(PreAnnotationResult.attempts).where(PreAnnotationResult.run_id == run_id))
        )
        run = db.get(PreAnnotationRun, run_id)
    assert run.status == "succeeded" and run.finished_at is not None
    assert sorted(d for d, _ in sets_per_note) == sorted(gold)  # every note has its set ...
    assert {count for _, count in sets_per_note} == {1}  # ... exactly one
    assert max(attempts) == 2  # the notes in flight at the crash were taken up again, once
    assert attempts.count(2) == at_kill["running"]
    # Answers given before the crash came from the cache afterwards: only requests that were in flight
    # when the worker died (at most the endpoint's concurrency) were asked again.
    assert len(asked_twice) <= concurrency
