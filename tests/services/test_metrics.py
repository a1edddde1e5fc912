"""The study's figures from stored sets and events: a simulated study run through the same services
as real physicians (study design, time events, edits, submissions), then the report.

The simulated physicians spend known times (a lognormal time model per condition, means from the
published study), so the true savings are known; the report's bootstrap CI must contain them in at
least 90 of 100 simulated studies.
"""

import json
import math
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import select

from app.db.models import AnnotationSet, Assignment, Document
from app.db.models import User as UserRow
from app.demo.seed import MEDICATION_SCHEMA
from app.domain.study_time import pipeline_savings
from app.services import editing, study
from app.services.metrics import METRICS_SCHEMA, project_metrics
from tests.services.study_fixtures import project_with_pre_labels

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MEAN_MINUTES = {"scratch": 17.6, "refine_human": 9.1, "refine_llm": 11.3}  # the published means
SIGMA = 0.35  # spread of the lognormal time model
TRUE_SAVINGS = 1 - MEAN_MINUTES["refine_llm"] / (MEAN_MINUTES["scratch"] + MEAN_MINUTES["refine_human"])
LOGINS = ["dr.a", "dr.b", "dr.c"]
STEP_SECONDS = 50  # activity events this far apart: below the idle threshold, so all of it counts


def _world(sessions, password_hash: str, tag: str, documents: int) -> tuple[int, dict[str, int]]:
    with sessions.begin() as db:
        users = {}
        for login in LOGINS:
            user = db.scalar(select(UserRow).where(UserRow.username == login))
            if user is None:
                user = UserRow(
                    username=login, display_name=login, role="annotator", password_hash=password_hash
                )
                db.add(user)
            users[login] = user
        project = project_with_pre_labels(db, f"Simulated {tag}", tag, documents)
        return project.id, {login: u.id for login, u in users.items()}


def _work(sessions, assignment: Assignment, minutes: float, tag: str) -> None:
    """A physician's page session: open, activity every STEP_SECONDS, one edit, submit."""
    seconds = minutes * 60
    marks = [*np.arange(0, seconds, STEP_SECONDS), seconds]
    events = [editing.TimeEventIn("open" if i == 0 else "activity", f"{tag}-t{i}", float(ms * 1000))
              for i, ms in enumerate(marks[:-1])]  # fmt: skip
    editing.record_time_events(sessions, assignment.annotator_id, assignment.annotation_set_id, f"{tag}-page",
                               events)  # fmt: skip
    with sessions() as db:
        version = db.get(AnnotationSet, assignment.annotation_set_id).version
    submit = editing.EditRequest(kind="submit", client_id=f"{tag}-submit", page_session=f"{tag}-page",
                                 version=version, monotonic_ms=float(marks[-1] * 1000))  # fmt: skip
    editing.apply_edit(sessions, assignment.annotator_id, assignment.annotation_set_id, submit, now=NOW)


def simulate(
    sessions, password_hash, seed: int, documents: int = 24, shares: dict[str, float] | None = None
) -> tuple[int, dict[int, float]]:
    """One simulated study; returns the project and the minutes each set really took."""
    rng = np.random.default_rng(seed)
    project_id, _ = _world(sessions, password_hash, f"s{seed}", documents)
    request = study.StudyRequest(
        name="simulated", annotators=LOGINS, seed=seed,
        shares=shares or {"scratch": 1 / 3, "refine_llm": 1 / 3, "refine_human": 1 / 3},
    )  # fmt: skip
    study_id = study.commit_study(sessions, project_id, request, user_id=None)
    spent: dict[int, float] = {}
    # Work the queue in rounds: submitting a scratch set releases its refine_human note.
    while True:
        with sessions() as db:
            ready = db.scalars(
                select(Assignment)
                .join(AnnotationSet, AnnotationSet.id == Assignment.annotation_set_id)
                .where(Assignment.study_id == study_id, AnnotationSet.status == "open")
                .order_by(Assignment.id)
            ).all()
        if not ready:
            break
        for assignment in ready:
            mean = MEAN_MINUTES[assignment.condition]
            # lognormal with the given mean: mu = ln(mean) - sigma^2 / 2
            minutes = float(rng.lognormal(math.log(mean) - SIGMA**2 / 2, SIGMA))
            _work(sessions, assignment, minutes, f"s{seed}a{assignment.id}")
            spent[assignment.annotation_set_id] = minutes
    return project_id, spent


def test_the_report_measures_what_the_physicians_spent(sessions, password_hashes):
    project_id, spent = simulate(sessions, password_hashes["annotator"], seed=1)
    report = project_metrics(sessions, project_id, time_resamples=500, agreement_resamples=50)
    assert report["schema"] == METRICS_SCHEMA
    with sessions() as db:
        sets = {s.id: s for s in db.scalars(select(AnnotationSet).where(AnnotationSet.id.in_(list(spent))))}
    by_condition: dict[str, list[float]] = {}
    for set_id, minutes in spent.items():
        by_condition.setdefault(sets[set_id].condition, []).append(minutes)
    for condition, values in by_condition.items():
        summary = report["time"]["per_condition"][condition]
        assert summary["n"] == len(values)
        assert summary["mean"] == pytest.approx(np.mean(values), rel=1e-9)  # every second counted, none lost
        assert report["time"]["minutes"][condition] == pytest.approx(sorted(values), rel=1e-9)
    # The savings equal the domain's figure on the true minutes per note.
    per_document: dict[str, dict[str, float]] = {}
    for set_id, minutes in spent.items():
        per_document.setdefault(sets[set_id].condition, {})[str(sets[set_id].document_id)] = minutes
    expected = pipeline_savings(
        per_document["scratch"],
        per_document["refine_human"],
        per_document["refine_llm"],
        resamples=500,
        seed=0,
    )
    assert report["time"]["savings"]["savings"] == pytest.approx(expected["savings"], rel=1e-9)
    # Different notes went through the two pipelines; the notes done from scratch only (the scratch
    # share) have no refine_human step, so they are not a human-pipeline cost.
    savings = report["time"]["savings"]
    assert savings["design"] == "independent"
    scratch_only = set(per_document["scratch"]) - set(per_document["refine_human"])
    assert set(savings["incomplete_human_documents"]) == scratch_only
    assert savings["n_human"] == len(per_document["refine_human"])
    # A lower idle threshold cuts every 50 s gap to 30 s.
    lower = project_metrics(sessions, project_id, idle_threshold_seconds=30, time_resamples=200,
                            agreement_resamples=20)  # fmt: skip
    assert (
        lower["time"]["per_condition"]["scratch"]["mean"] < report["time"]["per_condition"]["scratch"]["mean"]
    )
    assert lower["time"]["idle_threshold_seconds"] == 30
    json.dumps(report, allow_nan=False)  # the layout scripts rely on is plain JSON


@pytest.mark.parametrize("block", range(4))
def test_the_savings_ci_contains_the_truth_in_at_least_90_of_100_studies(sessions, password_hashes, block):
    """100 simulated studies, 25 per block (the blocks only keep each test short); each block must
    reach its share, and the whole is checked by the last block through a shared tally."""
    hits = 0
    for seed in range(block * 25, block * 25 + 25):
        # Half the notes through each pipeline (8 each): the savings need nothing else.
        project_id, _ = simulate(sessions, password_hashes["annotator"], seed=seed, documents=16,
                                 shares={"refine_llm": 0.5, "refine_human": 0.5})  # fmt: skip
        savings = project_metrics(sessions, project_id, time_resamples=1000, agreement_resamples=10)["time"][
            "savings"
        ]
        if savings["ci_low"] <= TRUE_SAVINGS <= savings["ci_high"]:
            hits += 1
    _TALLY[block] = hits
    # At least 90% over the 100 studies; a block may fall a little short of 22.5 on its own.
    assert hits >= 20, hits
    if len(_TALLY) == 4:
        assert sum(_TALLY.values()) >= 90, _TALLY


_TALLY: dict[int, int] = {}


def test_the_api_and_the_command_line_give_the_same_report(
    web, sessions, accounts, password_hashes, settings
):
    from tests.conftest import log_in, make_lead_of

    project_id, _ = simulate(sessions, password_hashes["annotator"], seed=5, documents=9)
    make_lead_of(sessions, project_id)
    log_in(web, "lead")
    api = web.get(f"/api/v1/lead/projects/{project_id}/metrics").json()
    env = {"CLINANN_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"}
    completed = subprocess.run(
        [sys.executable, "-m", "app.cli", "metrics", "--project", "Simulated s5", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    cli = json.loads(completed.stdout)
    for report in (api, cli):
        report.pop("generated_at")
    assert api == cli
    assert api["schema"] == METRICS_SCHEMA and api["time"]["per_condition"]["scratch"]["n"] > 0
    assert web.get(f"/api/v1/lead/projects/{project_id}/metrics?idle=0").status_code == 422


def test_agreement_of_an_existing_brat_project_imported_as_two_annotators(
    sessions, settings, password_hashes
):
    """No study needed: two physicians' brat exports of the same notes, imported as their layers."""
    import io
    import zipfile

    from app.services.batches import upload_batch
    from app.services.projects import create_project

    with sessions.begin() as db:
        for login in ("dr.x", "dr.y"):
            db.add(UserRow(username=login, display_name=login, role="annotator",
                           password_hash=password_hashes["annotator"]))  # fmt: skip
    project = create_project(sessions, "brat project", MEDICATION_SCHEMA)
    text = "Aspirin 81 mg daily. Metoprolol 25 mg twice daily.\n"
    ann = {
        "dr.x": "T1\tDrug 0 7\tAspirin\nT2\tStrength 8 13\t81 mg\nT3\tDrug 21 31\tMetoprolol\n",
        "dr.y": "T1\tDrug 0 7\tAspirin\nT2\tStrength 8 11\t81 \nT3\tDrug 21 31\tMetoprolol\n"
        "T4\tFrequency 14 19\tdaily\n",
    }

    def brat_zip(content: str) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("notes/a.txt", text)
            archive.writestr("notes/a.ann", content)
        return buffer.getvalue()

    first = upload_batch(sessions, settings, project.id, [("x.zip", brat_zip(ann["dr.x"]))], actor_id=None,
                         layer="annotator:dr.x")  # fmt: skip
    second = upload_batch(sessions, settings, project.id, [("y.zip", brat_zip(ann["dr.y"]))], actor_id=None,
                          layer="annotator:dr.y")  # fmt: skip
    assert (first.status, first.stored, second.stored) == ("accepted", 1, 0)
    assert second.already_stored == ["a"] and second.layers_added == ["a"]  # same note, a second layer
    again = upload_batch(sessions, settings, project.id, [("y.zip", brat_zip(ann["dr.y"]))], actor_id=None,
                         layer="annotator:dr.y")  # fmt: skip
    assert again.layers_added == []  # that layer is there already

    report = project_metrics(sessions, project.id, agreement_resamples=50, time_resamples=50)
    [pair] = report["agreement"]["pairs"]
    assert pair["annotators"] == ["dr.x", "dr.y"]
    # strict: Aspirin and Metoprolol match (2 of 3 and 4 spans): F1 = 2*2 / (3 + 4)
    assert pair["span_f1"]["strict"]["overall"]["value"] == pytest.approx(4 / 7)
    # lenient: the Strength spans overlap too: 2*3 / 7
    assert pair["span_f1"]["lenient"]["overall"]["value"] == pytest.approx(6 / 7)


def test_a_large_study_fits_in_one_statement(sessions):
    """Tens of thousands of sets go to PostgreSQL as one array parameter, not one parameter each
    (a statement takes at most 65,535)."""
    from sqlalchemy import func

    from app.services.metrics import _among

    ids = list(range(1, 100_001))
    statement = select(func.count()).select_from(Document).where(_among(Document.id, ids))
    with sessions() as db:
        assert len(statement.compile(dialect=db.get_bind().dialect).params) == 1
        assert db.scalar(statement) == 0
