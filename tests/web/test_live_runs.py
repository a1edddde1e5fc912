"""A run's page follows the run (issue 20): its live block polls while the run is queued or running,
and the block served once the run has finished has no polling trigger and no Cancel; an imported run
counts its notes."""

import asyncio
import hashlib
import json

import pytest
from sqlalchemy import select, update

from app.db.models import Document, PreAnnotationResult
from app.services import pre_annotation, run_reports
from app.services.batches import upload_batch
from app.services.projects import create_project
from tests.conftest import log_in, make_lead_of, page

SCHEMA = {"entity_types": [{"name": "Drug", "color": "#1f77b4", "hotkey": "d"}]}
NOTES = {"a": "Metformin 500 mg daily.", "b": "Aspirin and metformin.", "c": "No drugs today."}


@pytest.fixture
def project(sessions, accounts):
    made = create_project(sessions, "Live runs", SCHEMA)
    with sessions.begin() as db:
        for name, text in NOTES.items():
            db.add(
                Document(
                    project_id=made.id,
                    external_id=name,
                    text=text,
                    sha256=hashlib.sha256(text.encode()).hexdigest(),
                )
            )
    make_lead_of(sessions, made.id)
    return made.id


def _lexicon_run(sessions, project_id: int) -> int:
    request = pre_annotation.RunRequest(
        name="terms", method="lexicon", lexicon_csv="label,term\nDrug,metformin\nDrug,aspirin\n"
    )
    # No job queued: the test works the notes itself, with the worker's own function.
    return pre_annotation.start_run(sessions, project_id, request, user_id=None, defer=lambda *a, **k: None)


def _work(sessions, run_id: int, *names: str) -> None:
    with sessions() as db:
        ids = db.scalars(select(Document.id).where(Document.external_id.in_(names))).all()
    for document_id in ids:
        asyncio.run(pre_annotation.pre_annotate_note(sessions, run_id, document_id))


def _live(web, run_id: int):
    response = web.get(f"/lead/runs/{run_id}", headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = page(response)
    [block] = html.select("[data-testid=run-live]")
    assert html.select_one("[data-testid=run-configuration]") is None  # the fragment, not the page
    rows = {row["data-note"]: row["data-status"] for row in block.select("[data-testid=note-result]")}
    return block, rows


def test_the_run_page_polls_while_the_run_works_and_stops_once_it_has_finished(web, sessions, project):
    log_in(web, "lead")
    run_id = _lexicon_run(sessions, project)
    full = page(web.get(f"/lead/runs/{run_id}"))
    assert full.select_one("[data-testid=run-live]")["hx-trigger"] == "every 2s"

    block, rows = _live(web, run_id)
    assert (block["data-status"], block["hx-trigger"], block["hx-get"]) == (
        "queued",
        "every 2s",
        f"/lead/runs/{run_id}",
    )
    assert rows == {"a": "queued", "b": "queued", "c": "queued"}
    assert block.select_one("[data-testid=cancel-run]") is not None
    assert block.select_one("[data-testid=run-counts]").get_text(" ", strip=True).startswith("0 / 3 notes")

    _work(sessions, run_id, "a")
    block, rows = _live(web, run_id)
    assert block["data-status"] == "running" and block["hx-trigger"] == "every 2s"
    assert rows == {"a": "succeeded", "b": "queued", "c": "queued"}
    assert block.select_one("[data-testid=note-result][data-note=a] td:nth-of-type(3)").get_text() == "1"

    _work(sessions, run_id, "b", "c")
    block, rows = _live(web, run_id)
    assert block["data-status"] == "succeeded"
    assert not block.has_attr("hx-trigger") and not block.select("[hx-trigger]")  # polling stops
    assert block.select_one("[data-testid=cancel-run]") is None
    assert rows == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    assert block.select_one("[data-testid=run-counts]").get_text(" ", strip=True).startswith("3 / 3 notes")
    assert block.select_one("[data-testid=mark-study-base]") is not None
    assert block.select_one("[data-testid=no-gold]") is not None  # its evaluation, once finished
    assert block.select_one("[data-testid=dropped-list]") is not None

    # The runs list polls while a run works, and not once every run has finished.
    listing = page(web.get(f"/lead/projects/{project}/runs", headers={"HX-Request": "true"}))
    assert not listing.select_one("[data-testid=runs]").has_attr("hx-trigger")


def test_a_cancelled_run_stops_polling_and_offers_to_run_the_rest(web, sessions, project):
    log_in(web, "lead")
    run_id = _lexicon_run(sessions, project)
    _work(sessions, run_id, "a")
    pre_annotation.cancel_run(sessions, run_id, user_id=None)
    block, rows = _live(web, run_id)
    assert block["data-status"] == "cancelled" and not block.has_attr("hx-trigger")
    assert rows == {"a": "succeeded", "b": "cancelled", "c": "cancelled"}
    assert block.select_one("[data-testid=cancel-run]") is None
    assert block.select_one("[data-testid=rerun-failed]") is not None


def test_the_note_table_counts_chunks_dropped_and_fuzzy_as_the_raw_outputs_hold_them(sessions, project):
    run_id = _lexicon_run(sessions, project)
    raw = {
        "a": [
            {
                "messages": [{"role": "user"}],
                "dropped": [{"output": "x"}, {"output": "y"}],
                "fuzzy": [{"s": 1}],
            },
            {"messages": [], "dropped": [], "fuzzy": [{"s": 2}, {"s": 3}]},
            {"method": "lexicon", "matches": 4},
            "not a chunk",
        ],
        "b": [],
        "c": [{"messages": [], "dropped": None}],
    }
    with sessions.begin() as db:
        for name, outputs in raw.items():
            document_id = db.scalar(select(Document.id).where(Document.external_id == name))
            db.execute(
                update(PreAnnotationResult)
                .where(PreAnnotationResult.run_id == run_id, PreAnnotationResult.document_id == document_id)
                .values(raw_outputs=outputs)
            )

    def counted(outputs):  # the rule as Python states it: dict chunks, "messages" makes a chunk
        chunks = [c for c in outputs if isinstance(c, dict)]
        return (
            sum(1 for c in chunks if "messages" in c),
            sum(len(c.get("dropped") or []) for c in chunks),
            sum(len(c.get("fuzzy") or []) for c in chunks),
        )

    results = {
        r.external_id: (r.chunks, r.dropped, r.fuzzy) for r in run_reports.note_results(sessions, run_id)
    }
    assert results == {name: counted(outputs) for name, outputs in raw.items()}
    assert results["a"] == (2, 2, 3)


def test_an_imported_run_counts_its_notes_on_its_page_and_in_the_list(web, sessions, runtime, project):
    lines = [
        {"id": "a", "text": NOTES["a"], "spans": [{"id": "T1", "label": "Drug", "fragments": [[0, 9]]}]},
        {"id": "b", "text": NOTES["b"], "spans": []},
    ]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    outcome = upload_batch(
        sessions, runtime.settings, project, [("m.jsonl", content)], actor_id=None, layer="pre:model"
    )
    assert outcome.status == "accepted"
    run_id = next(r.id for r in run_reports.list_runs(sessions, project) if r.name == "model")
    log_in(web, "lead")
    html = page(web.get(f"/lead/runs/{run_id}"))
    assert html.select_one("[data-testid=run-counts]").get_text(" ", strip=True).startswith("2 / 2 notes")
    assert html.select_one("[data-testid=run-live]").get("hx-trigger") is None
    rows = {r["data-note"]: r.select("td")[2].get_text() for r in html.select("[data-testid=note-result]")}
    assert rows == {"a": "1", "b": "0"}  # its notes with their pre-labels
    row = page(web.get(f"/lead/projects/{project}/runs")).select_one(
        f"[data-testid=run-row][data-run-id='{run_id}']"
    )
    assert row.select_one(".run-progress").get_text(" ", strip=True) == "2 / 2"


def test_another_projects_run_is_refused_to_the_poll_too(web, sessions, project, password_hashes):
    other = create_project(sessions, "Not led", SCHEMA)
    with sessions.begin() as db:
        db.add(
            Document(
                project_id=other.id, external_id="x", text="Aspirin.", sha256=hashlib.sha256(b"A").hexdigest()
            )
        )
    run_id = _lexicon_run(sessions, other.id)
    log_in(web, "lead")
    for headers in ({}, {"HX-Request": "true"}):
        response = web.get(f"/lead/runs/{run_id}", headers=headers)
        assert response.status_code == 403 and "run-live" not in response.text
