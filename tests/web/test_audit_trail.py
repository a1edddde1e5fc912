"""The audit trail: admins read, filter and export it; nobody can change it, not even through SQL."""

import csv
import io
import json

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from app.db.models import AuditEvent, User
from app.services import audit
from tests.conftest import PASSWORDS, log_in, page


@pytest.fixture
def trail(sessions, accounts):
    with sessions.begin() as db:
        lead = db.scalar(select(User).where(User.username == "lead"))
        audit.record(
            db, "batch.released", user_id=lead.id, object_type="batch", object_id=7, details={"n": 1}
        )
        audit.record(db, "batch.rejected", username="lead", object_type="batch", object_id=8)
        audit.record(db, "login.failed", username="=cmd|' /C calc'!A0", client_address="10.0.0.9")
    return accounts


def test_admins_filter_the_trail_and_export_exactly_what_they_see(web, sessions, trail):
    log_in(web, "admin", PASSWORDS["admin"])
    html = page(web.get("/admin/audit?action=batch."))
    assert [r["data-action"] for r in html.select("[data-testid=audit-row]")] == [
        "batch.rejected",
        "batch.released",
    ]
    assert (
        page(web.get("/admin/audit?object_id=7")).select_one("[data-testid=audit-total]")["data-total"] == "1"
    )
    assert page(web.get("/admin/audit?who=lead")).select_one("[data-testid=audit-total]")["data-total"] == "2"
    exported = web.get("/admin/audit/export?action=batch.&format=csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["action"], r["who"], r["object_id"]) for r in rows] == [
        ("batch.released", "lead", "7"),
        ("batch.rejected", "lead", "8"),
    ]
    assert json.loads(rows[0]["details"]) == {"n": 1}
    lines = [
        json.loads(line)
        for line in web.get("/admin/audit/export?format=jsonl&action=login.failed").text.splitlines()
    ]
    assert [(line["action"], line["who"]) for line in lines] == [("login.failed", "=cmd|' /C calc'!A0")]
    everything = web.get("/admin/audit/export?format=csv&action=login.failed").text
    assert "'=cmd" in everything  # a name that looks like a formula stays text in a spreadsheet
    with sessions() as db:  # the exports themselves are in the trail
        assert (
            db.scalars(select(AuditEvent.action).where(AuditEvent.action == "audit.exported")).all()
            == ["audit.exported"] * 3
        )
    assert web.get("/admin/audit?since=yesterday").status_code == 422
    assert web.get("/admin/audit/export?format=xlsx").status_code == 422


@pytest.mark.parametrize("role", ["lead", "annotator"])
def test_only_admins_read_the_trail(web, trail, role):
    log_in(web, role, PASSWORDS[role])
    assert web.get("/admin/audit").status_code == 403
    assert web.get("/admin/audit/export").status_code == 403


def test_the_database_refuses_to_change_or_delete_an_audit_event(sessions, trail):
    with sessions() as db:
        first = db.scalar(select(AuditEvent.id).order_by(AuditEvent.id))
    for statement in (
        update(AuditEvent).where(AuditEvent.id == first).values(action="nothing.happened"),
        update(AuditEvent).where(AuditEvent.id == first).values(details={}),
        delete(AuditEvent).where(AuditEvent.id == first),
    ):
        with pytest.raises(DBAPIError, match="append-only"), sessions.begin() as db:
            db.execute(statement)
    with sessions() as db:
        event = db.get(AuditEvent, first)
        assert (event.action, event.details) == ("batch.released", {"n": 1})


def test_deleting_an_account_keeps_its_events_unlinked(sessions, trail):
    """The one change the schema itself makes (ON DELETE SET NULL) still goes through."""
    with sessions.begin() as db:
        db.execute(text("DELETE FROM login_sessions"))
        lead = db.scalar(select(User).where(User.username == "lead"))
        db.execute(delete(User).where(User.id == lead.id))
    with sessions() as db:
        event = db.scalar(select(AuditEvent).where(AuditEvent.action == "batch.released"))
        assert event.user_id is None and event.object_id == "7"


def test_the_trail_pages_by_100_and_says_which_events_it_shows(web, sessions, accounts):
    with sessions.begin() as db:
        for n in range(121):
            audit.record(db, "login.failed", username=f"user{n}", details={"n": n})
    log_in(web, "admin", PASSWORDS["admin"])
    first = page(web.get("/admin/audit?action=login.failed"))
    rows = first.select("[data-testid=audit-row]")
    assert len(rows) == 100
    total = first.select_one("[data-testid=audit-total]")
    assert total["data-total"] == "121"
    assert " ".join(total.text.split()).startswith("Showing 1–100 of 121 events, newest first")
    assert rows[0].select("td")[2].text == "user120"  # newest first
    [top, bottom] = first.select("[data-testid=audit-pager]")
    assert "Page 1 of 2" in top.text and top.select_one("[rel=prev]") is None
    older = top.select_one("[rel=next]")["href"]
    assert bottom.select_one("[rel=next]")["href"] == older
    second = page(web.get(f"/admin/audit{older}"))
    assert second.select_one("[data-testid=audit-range]").text == "101–121"
    assert " ".join(second.select_one("[data-testid=audit-total]").text.split()).startswith(
        "Showing 101–121 of 121 events"
    )
    rows = second.select("[data-testid=audit-row]")
    assert len(rows) == 21 and rows[-1].select("td")[2].text == "user0"
    pager = second.select_one("[data-testid=audit-pager]")
    assert "Page 2 of 2" in pager.text and pager.select_one("[rel=next]") is None
    assert "action=login.failed" in pager.select_one("[rel=prev]")["href"]  # the filters travel along
    # Past the last page: the last page. A page that is not a number: refused, naming the field.
    assert (
        page(web.get("/admin/audit?action=login.failed&page=9")).select_one("[data-testid=audit-range]").text
        == "101–121"
    )
    refused = web.get("/admin/audit?page=two")
    assert refused.status_code == 422 and "page" in refused.text
    # Filtered to one page: no pager.
    assert page(web.get("/admin/audit?who=user7")).select("[data-testid=audit-pager]") == []


PREFIXED = [
    "adjudication.keep",
    "adjudication.start",
    "adjudications.other",
    "batch.adjudication",
    "adjudication",
]


def test_the_action_filter_takes_an_actions_first_part(web, sessions, accounts):
    with sessions.begin() as db:
        for action in PREFIXED:
            audit.record(db, action, username="lead")
    log_in(web, "admin", PASSWORDS["admin"])

    def shown(action: str) -> list[str]:
        html = page(web.get("/admin/audit", params={"action": action}))
        return sorted(r["data-action"] for r in html.select("[data-testid=audit-row]"))

    every = ["adjudication", "adjudication.keep", "adjudication.start"]
    assert shown("adjudication") == every
    assert shown("adjudication.") == every  # the older spelling still works
    assert shown("adjudication.keep") == ["adjudication.keep"]  # an exact name, only itself
    assert shown("adjudication.ke") == []  # parts are whole: no half words
    assert shown("adjudication%") == []  # LIKE's wildcards are plain characters
    exported = web.get("/admin/audit/export", params={"action": "adjudication", "format": "jsonl"})
    assert sorted(json.loads(line)["action"] for line in exported.text.splitlines()) == every
    # The filter offers the actions the trail holds and their first parts.
    offered = [o["value"] for o in page(web.get("/admin/audit")).select("#audit-actions option")]
    assert {"adjudication", "adjudication.keep", "adjudications", "batch", "batch.adjudication"} <= set(
        offered
    )
    assert offered == sorted(offered)
