"""The editor's HTTP side: who may open a note, what the page holds, edits and time events."""

import json

import pytest
from sqlalchemy import select

from app.db.models import EditEvent, Span
from app.services import editing
from tests.conftest import PASSWORDS, log_in, page
from tests.services.editing_fixtures import ASPIRIN, METFORMIN, NOTE, build_world


@pytest.fixture
def world(sessions, password_hashes):
    return build_world(sessions, password_hashes["annotator"])


def _log_in_dr_a(web):
    response = log_in(web, "dr.a", PASSWORDS["annotator"])
    assert response.status_code == 303


def _csrf(web):
    return json.loads(page(web.get("/annotate")).body["hx-headers"])["X-CSRF-Token"]


def _edit(web, set_id, version, **body):
    payload = {
        "client_id": body.pop("client_id", "c1"),
        "page_session": "page-1",
        "version": version,
        "monotonic_ms": 10.0,
        **body,
    }
    return web.post(f"/annotate/sets/{set_id}/edits", json=payload, headers={"X-CSRF-Token": _csrf(web)})


def test_the_page_carries_the_exact_text_and_the_spans(web, world):
    _log_in_dr_a(web)
    response = web.get(f"/annotate/sets/{world.sets['refine_llm']}")
    assert response.status_code == 200
    html = page(response)
    data = json.loads(html.select_one("#editor-data").string)
    assert data["text"] == NOTE  # CR, BOM and emoji survive: the text travels as JSON, not as HTML
    items = html.select("[data-testid=span-item]")
    assert [i["data-status"] for i in items] == ["pending"] * 3
    assert json.loads(items[0]["data-fragments"]) == [[METFORMIN, METFORMIN + 9]]
    assert [i.select_one("[data-testid=confidence]").text for i in items] == ["0.90", "0.80", "0.70"]
    assert html.select_one("#palette-title") and len(html.select(".palette-button")) == 9


def test_scratch_page_holds_nothing_of_the_pre_labels(web, world, sessions):
    with sessions() as db:
        pre_uids = set(db.scalars(select(Span.uid).where(Span.annotation_set_id == world.pre_set_id)))
    _log_in_dr_a(web)
    response = web.get(f"/annotate/sets/{world.sets['scratch']}")
    html = page(response)
    assert html.select("[data-testid=span-item]") == []
    assert "pending" not in html.select_one("#span-list").decode()
    assert not any(uid in response.text for uid in pre_uids)
    assert html.select("[data-testid=confidence]") == []  # no model confidence of a pre-label either


def test_another_physicians_note_is_forbidden(web, world, sessions, password_hashes):
    from app.db.models import User

    with sessions.begin() as db:
        db.add(
            User(
                username="dr.c",
                display_name="Dr C",
                role="annotator",
                password_hash=password_hashes["annotator"],
            )
        )
    log_in(web, "dr.c", PASSWORDS["annotator"])
    for condition, set_id in world.sets.items():
        assert web.get(f"/annotate/sets/{set_id}").status_code == 403, condition
        for part in ("spans", "relations", "concepts?q=metf"):  # what the editor page fetches
            assert web.get(f"/annotate/sets/{set_id}/{part}").status_code == 403, (condition, part)
        assert _edit(web, set_id, 0, kind="add", uid="x", label="Drug", fragments=[[1, 3]]).status_code == 403
    assert web.get(f"/annotate/sets/{world.pre_set_id}").status_code == 403
    with sessions() as db:
        assert db.scalar(select(EditEvent.id)) is None


def test_an_edit_answers_with_the_changed_item_and_version(web, world):
    _log_in_dr_a(web)
    set_id = world.sets["scratch"]
    response = _edit(
        web, set_id, 0, kind="add", uid="u1", label="Drug", fragments=[[METFORMIN, METFORMIN + 9]]
    )
    assert response.status_code == 200 and response.headers["X-Set-Version"] == "1"
    fragment = page(response)
    [item] = fragment.select("li[data-uid=u1]")
    assert item["data-label"] == "Drug" and "Metformin" in item.text
    assert "<html" not in response.text  # just the block
    repeat = _edit(web, set_id, 0, kind="add", uid="u1", label="Drug", fragments=[[METFORMIN, METFORMIN + 9]])
    assert (
        repeat.status_code == 200 and page(repeat).select_one("[data-duplicate]")["data-duplicate"] == "true"
    )
    stale = _edit(web, set_id, 0, client_id="c2", kind="add", uid="u2", label="Drug", fragments=[[1, 3]])
    assert stale.status_code == 409 and stale.json()["version"] == 1
    bad = _edit(web, set_id, 1, client_id="c3", kind="add", uid="u3", label="Drug", fragments=[[0, 10_000]])
    assert bad.status_code == 422 and bad.json()["detail"].startswith("fragments[0]")
    removed = _edit(web, set_id, 1, client_id="c4", kind="delete", uid="u1")
    assert page(removed).select_one("li[data-uid=u1]")["data-removed"] == "true"


def test_an_edit_without_csrf_token_is_refused(web, world):
    _log_in_dr_a(web)
    response = web.post(
        f"/annotate/sets/{world.sets['scratch']}/edits",
        json={
            "kind": "add",
            "client_id": "c",
            "page_session": "p",
            "version": 0,
            "uid": "u",
            "label": "Drug",
            "fragments": [[1, 3]],
        },
    )
    assert response.status_code == 403
    assert editing.stored_state(web.app.state.runtime.sessions, world.sets["scratch"]).spans == {}


def test_time_events_by_fetch_and_by_beacon_form(web, world, sessions):
    _log_in_dr_a(web)
    set_id = world.sets["scratch"]
    csrf = _csrf(web)
    as_json = web.post(
        f"/annotate/sets/{set_id}/events",
        headers={"X-CSRF-Token": csrf},
        json={"page_session": "p1", "events": [{"kind": "open", "client_id": "t1", "monotonic_ms": 0}]},
    )
    assert as_json.status_code == 204
    payload = json.dumps(
        {"page_session": "p1", "events": [{"kind": "close", "client_id": "t2", "monotonic_ms": 9000}]}
    )
    as_beacon = web.post(f"/annotate/sets/{set_id}/events", data={"csrf_token": csrf, "payload": payload})
    assert as_beacon.status_code == 204
    bad = web.post(f"/annotate/sets/{set_id}/events", data={"csrf_token": csrf, "payload": '{"events": 3}'})
    assert bad.status_code == 422
    [session] = editing.set_times(sessions, set_id, 60)
    assert (session.active_seconds, session.wall_seconds) == (9.0, 9.0)
    queue = page(web.get("/annotate"))
    statuses = {
        row.select("td")[2].text.strip(): row.select("td")[3].text.strip()
        for row in queue.select("[data-testid=queue-item]")
    }
    assert statuses["note-scratch"] == "in progress" and statuses["note-refine_llm"] == "new"


def test_continue_opens_the_first_unfinished_note(web, world, sessions):
    _log_in_dr_a(web)
    assert web.get("/annotate/next").headers["location"] == f"/annotate/sets/{world.sets['scratch']}"
    response = _edit(web, world.sets["scratch"], 0, kind="skip", text="not a discharge summary")
    assert response.status_code == 200
    assert web.get("/annotate/next").headers["location"] == f"/annotate/sets/{world.sets['refine_llm']}"


def test_a_submission_queues_the_refresh_of_the_leads_report(web, world, sessions):
    from sqlalchemy import text

    _log_in_dr_a(web)
    assert _edit(web, world.sets["scratch"], 0, kind="submit", client_id="s1").status_code == 200
    assert _edit(web, world.sets["scratch"], 0, kind="submit", client_id="s1").status_code == 200  # a retry
    with sessions() as db:
        jobs = db.execute(text("SELECT task_name, args FROM procrastinate_jobs")).all()
        project_id = db.scalar(text("SELECT project_id FROM documents LIMIT 1"))
    assert [(j.task_name, j.args) for j in jobs] == [("clinann.refresh_metrics", {"project_id": project_id})]


def test_an_edit_answer_carries_only_the_relations_it_changed(web, world):
    """Issue 19: on a dense note the whole relation list was most of every answer; now an answer names
    the relations whose item changed (with the new count), and a resent edit carries the whole list."""
    _log_in_dr_a(web)
    set_id = world.sets["scratch"]
    strength = NOTE.index("500 mg")
    aspirin_strength = NOTE.index("81 mg")
    spans = [
        ("d1", "Drug", METFORMIN, METFORMIN + 9),
        ("s1", "Strength", strength, strength + 6),
        ("d2", "Drug", ASPIRIN, ASPIRIN + 7),
        ("s2", "Strength", aspirin_strength, aspirin_strength + 5),
    ]
    version = 0
    for uid, label, start, end in spans:
        answer = _edit(
            web,
            set_id,
            version,
            client_id=f"c-{uid}",
            kind="add",
            uid=uid,
            label=label,
            fragments=[[start, end]],
        )
        assert answer.status_code == 200, answer.text
        assert page(answer).select("[data-testid=relation-item]") == []  # no relation changed
        version += 1
    first = _edit(
        web,
        set_id,
        version,
        client_id="r1",
        kind="relation_add",
        uid="r1",
        label="Strength-Drug",
        head="s1",
        tail="d1",
    )
    assert first.status_code == 200, first.text
    version += 1
    second = _edit(
        web,
        set_id,
        version,
        client_id="r2",
        kind="relation_add",
        uid="r2",
        label="Strength-Drug",
        head="s2",
        tail="d2",
    )
    version += 1
    changes = page(second).select_one("ol.relation-changes")
    assert changes["data-count"] == "2"
    [item] = changes.select("[data-testid=relation-item]")  # r2 only, not r1 again
    assert item["data-uid"] == "r2" and item["data-order"].startswith(f"{aspirin_strength:09d} ")
    assert "81 mg" in item.text
    assert page(second).select_one("#relation-list-container") is None
    # Moving a linked span rewrites the relation that shows its text; relabelling an unlinked one none.
    moved = _edit(
        web, set_id, version, client_id="m1", kind="modify", uid="s1", fragments=[[strength, strength + 3]]
    )
    version += 1
    assert [li["data-uid"] for li in page(moved).select("ol.relation-changes > li")] == ["r1"]
    removed = _edit(web, set_id, version, client_id="x1", kind="relation_delete", uid="r1")
    version += 1
    marks = page(removed).select("ol.relation-changes > li")
    assert [(li["data-uid"], li.get("data-removed")) for li in marks] == [("r1", "true")]
    assert page(removed).select_one("ol.relation-changes")["data-count"] == "1"
    resent = _edit(web, set_id, version - 1, client_id="x1", kind="relation_delete", uid="r1")
    whole = page(resent).select_one("#relation-list-container")
    assert whole is not None and [li["data-uid"] for li in whole.select("[data-testid=relation-item]")] == [
        "r2"
    ]
