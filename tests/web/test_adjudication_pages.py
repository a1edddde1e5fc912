"""The adjudication pages over HTTP: the queue, starting gold, the comparison, the gold editor's
endpoints, hidden names, and who may do any of it."""

import json

import pytest
from sqlalchemy import select

from app.db.models import AnnotationSet
from app.services import editing
from tests.conftest import PASSWORDS, log_in, page
from tests.services.adjudication_fixtures import DIABETES, NAUSEA, build_adjudication_world


@pytest.fixture
def world(sessions, password_hashes):
    return build_adjudication_world(sessions, password_hashes)


def _csrf(web, path="/lead"):
    return json.loads(page(web.get(path)).body["hx-headers"])["X-CSRF-Token"]


def _start(web, world):
    response = web.post(
        f"/lead/projects/{world.project_id}/adjudication/{world.document_id}", data={"csrf_token": _csrf(web)}
    )
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


def test_the_lead_starts_gold_from_the_queue_and_sees_every_version(web, world, sessions):
    assert log_in(web, "lead", PASSWORDS["lead"]).status_code == 303
    queue = page(web.get(f"/lead/projects/{world.project_id}/adjudication"))
    [row] = queue.select("[data-testid=queue-row]")
    assert row["data-gold"] == "not started" and row.select_one("[data-testid=queue-agreement]").text == "60%"
    gold_id = _start(web, world)
    assert _start(web, world) == gold_id  # opening it again continues the same gold set
    html = page(web.get(f"/lead/gold/{gold_id}"))
    data = json.loads(html.select_one("#editor-data").string)
    assert data["base"] == f"/lead/gold/{gold_id}" and data["gold"] is True
    assert len(html.select("[data-testid=span-item]")) == 3  # the agreed spans, proposed
    disputed = [c for c in html.select("[data-testid=candidate]") if c["data-agreed"] == "false"]
    assert [c["data-key"] for c in disputed] == [f"{DIABETES[0]}-{DIABETES[1]}", f"{NAUSEA[0]}-{NAUSEA[1]}"]
    labels = [v["data-label"] for v in disputed[0].select("[data-testid=version]")]
    assert labels == ["ADE", "Reason"]
    assert "Dr Ana" in html.select_one("[data-testid=comparison]").text
    answers = {a["data-key"]: a["data-agreed"] for a in html.select("[data-testid=comparison-answer]")}
    assert answers["primary_diagnosis"] == "true" and answers["severity"] == "false"
    assert len(html.select("[data-testid=comparison-relation]")) == 2

    # Hidden names: neither display names nor logins in the comparison.
    hidden = page(web.get(f"/lead/gold/{gold_id}?hide_names=1")).select_one("[data-testid=comparison]").text
    assert "Dr Ana" not in hidden and "Dr Ben" not in hidden and "ana" not in hidden.lower().split()
    assert "Physician A" in hidden and "Physician B" in hidden

    # Keep a version through the gold editor's endpoint; the comparison fragment shows it kept.
    keep = disputed[0].select("[data-testid=version]")[1].select_one("[data-testid=keep]")
    with sessions() as db:
        version = db.get(AnnotationSet, gold_id).version
    response = web.post(
        f"/lead/gold/{gold_id}/edits",
        json={
            "kind": "adopt",
            "client_id": "k1",
            "page_session": "p1",
            "version": version,
            "source_set": int(keep["data-source-set"]),
            "source_uid": keep["data-source-uid"],
        },
        headers={"X-CSRF-Token": _csrf(web)},
    )
    assert response.status_code == 200, response.text
    fragment = page(web.get(f"/lead/gold/{gold_id}/comparison?hide_names=1"))
    kept = fragment.select_one("[data-testid=version][data-label=Reason]")
    assert kept["data-in-gold"] and kept.select_one("[data-testid=mark-ambiguous]")
    assert "Dr Ana" not in fragment.text
    assert editing.replayed_state(sessions, gold_id) == editing.stored_state(sessions, gold_id)


def test_physicians_cannot_reach_adjudication_and_gold_cannot_be_forged(web, world, sessions):
    assert log_in(web, "lead", PASSWORDS["lead"]).status_code == 303
    gold_id = _start(web, world)
    web.post("/logout", data={"csrf_token": _csrf(web)})
    assert log_in(web, "ana", PASSWORDS["annotator"]).status_code == 303
    csrf = _csrf(web, "/annotate")
    assert web.get(f"/lead/projects/{world.project_id}/adjudication").status_code == 403
    assert web.get(f"/lead/gold/{gold_id}").status_code == 403
    assert (
        web.post(
            f"/lead/projects/{world.project_id}/adjudication/{world.document_id}", data={"csrf_token": csrf}
        ).status_code
        == 403
    )
    # Through the physician's own editor routes, gold is not theirs either.
    forged = {"kind": "note", "client_id": "f1", "page_session": "p1", "version": 1, "text": "mine"}
    response = web.post(f"/annotate/sets/{gold_id}/edits", json=forged, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 403
    assert editing.stored_state(sessions, gold_id).note == ""


def test_a_lead_cannot_edit_a_physicians_set_through_the_gold_routes(web, world, sessions):
    assert log_in(web, "lead", PASSWORDS["lead"]).status_code == 303
    before = editing.stored_state(sessions, world.sets["ana"])
    forged = {"kind": "note", "client_id": "f2", "page_session": "p1", "version": 0, "text": "lead"}
    response = web.post(
        f"/lead/gold/{world.sets['ana']}/edits", json=forged, headers={"X-CSRF-Token": _csrf(web)}
    )
    assert response.status_code == 403
    assert web.get(f"/lead/gold/{world.sets['ana']}").status_code == 404
    assert editing.stored_state(sessions, world.sets["ana"]) == before


def test_a_note_with_one_physician_cannot_be_started(web, world, sessions):
    with sessions.begin() as db:
        db.execute(
            AnnotationSet.__table__.update()
            .where(AnnotationSet.id == world.sets["ben"])
            .values(status="open")
        )
    assert log_in(web, "lead", PASSWORDS["lead"]).status_code == 303
    assert page(web.get(f"/lead/projects/{world.project_id}/adjudication")).select_one(
        "[data-testid=queue-empty]"
    )
    response = web.post(
        f"/lead/projects/{world.project_id}/adjudication/{world.document_id}", data={"csrf_token": _csrf(web)}
    )
    assert response.status_code == 422
    with sessions() as db:
        assert db.scalar(select(AnnotationSet.id).where(AnnotationSet.origin == "gold")) is None


def test_the_queue_pages_and_filters_by_gold_status(web, world, sessions, monkeypatch):
    from app.web.routers import lead_adjudication
    from tests.services.adjudication_fixtures import METFORMIN, _span, add_note, physician_set

    with sessions.begin() as db:
        for name in ("note-2", "note-3"):
            note = add_note(db, world.project_id, name)
            for login in ("ana", "ben"):
                physician_set(db, note.id, world.annotator_ids[login], [_span("Drug", METFORMIN)], [], {})
    monkeypatch.setattr(lead_adjudication, "PAGE_SIZE", 2)
    assert log_in(web, "lead", PASSWORDS["lead"]).status_code == 303
    _start(web, world)
    base = f"/lead/projects/{world.project_id}/adjudication"
    first = page(web.get(base))
    assert [r["data-external-id"] for r in first.select("[data-testid=queue-row]")] == ["note-1", "note-2"]
    assert "1 in progress" in first.select_one("[data-testid=queue-counts]").text
    second = page(web.get(f"{base}?page=2"))
    assert [r["data-external-id"] for r in second.select("[data-testid=queue-row]")] == ["note-3"]
    started = page(web.get(f"{base}?gold=open"))
    assert [r["data-external-id"] for r in started.select("[data-testid=queue-row]")] == ["note-1"]
    assert web.get(f"{base}?gold=maybe").status_code == 422
