"""The admin home: accounts, adding one (errors name the field), the audit trail with names."""

from datetime import UTC, datetime

from sqlalchemy import func, select

from app.db.models import User
from tests.conftest import log_in, page, session_csrf


def test_admin_adds_an_account_and_sees_it_audited(web, accounts, sessions):
    log_in(web, "admin")
    response = web.post(
        "/admin/users",
        data={
            "username": "dr.new",
            "password": "long-enough-pw",
            "role": "annotator",
            "display_name": "Dr. New",
            "csrf_token": session_csrf(web),
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/users?added=dr.new"
    accounts_page = page(web.get("/admin/users"))
    assert "dr.new" in [row["data-username"] for row in accounts_page.select("[data-testid=account-row]")]
    assert accounts_page.select_one("#new-role option[selected]")["value"] == "annotator"
    html = page(web.get("/admin"))
    names = [row.select("td")[0].text for row in html.select("[data-testid=user-row]")]
    assert "dr.new" in names
    audit_rows = [[td.text for td in row.select("td")] for row in html.select("[data-testid=audit] tbody tr")]
    assert audit_rows[0][1:3] == ["admin", "user.create"]  # newest first, actor by name


def test_a_bad_account_names_the_field_and_stores_nothing(web, accounts, sessions):
    log_in(web, "admin")
    response = web.post(
        "/admin/users",
        data={
            "username": "Bad Name!",
            "password": "long-enough-pw",
            "role": "annotator",
            "csrf_token": session_csrf(web),
        },
    )
    assert response.status_code == 422
    assert page(response).select_one("[data-testid=form-error]").text.startswith("username:")
    with sessions() as db:
        assert db.scalar(select(User).where(User.username == "bad name!")) is None


# ---- a held batch: per-note decisions, reject only when confirmed, what a decided batch keeps ------

SCHEMA = {"entity_types": [{"name": "Drug", "color": "#1f77b4"}]}
PHI = "Patient: John Smith, MRN 12345678, seen 03/04/2019"
OTHER_PHI = "Call 555-123-4567 after aspirin."
CLEAN = "Aspirin 81 mg daily for chest pain."
WORDS = "the patient asked to be left out of the study"


def _held_batch(web, sessions, files=None) -> tuple[int, int]:
    from app.services.projects import create_project

    project = create_project(sessions, "medications", SCHEMA)
    files = files or [("n1.txt", PHI), ("n2.txt", CLEAN), ("n3.txt", OTHER_PHI)]
    response = web.post(
        "/admin/batches",
        files=[("files", (name, text.encode(), "text/plain")) for name, text in files],
        data={"project_id": str(project.id), "layer": "pre:x", "csrf_token": session_csrf(web)},
    )
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1]), project.id


def _batch(sessions, batch_id):
    from app.db.models import Batch

    with sessions() as db:
        return db.get(Batch, batch_id)


def _actions(sessions) -> list[str]:
    from app.db.models import AuditEvent

    with sessions() as db:
        return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def _note_section(html, name):
    return html.select_one(f"[data-testid=phi-note][data-note='{name}']")


def test_each_flagged_note_gets_its_own_decision_with_a_reason_in_words(web, accounts, sessions):
    log_in(web, "admin")
    batch_id, _ = _held_batch(web, sessions)
    html = page(web.get(f"/admin/batches/{batch_id}"))
    assert html.select_one("[data-testid=undecided-count]").text == "2 awaiting a decision"
    n1 = _note_section(html, "n1")
    form = n1.select_one("[data-testid=note-decision-form]")
    assert [i["value"] for i in form.select("[data-testid=note-decision-choice]")] == [
        "release",
        "exclude",
        "mask",
    ]
    assert form.select_one("input[name=note]")["value"] == "n1"
    # Every label is tied to its control (ids unique across the notes' forms).
    ids = [tag["id"] for tag in html.select("[id]")]
    assert len(ids) == len(set(ids))
    token = form.select_one("input[name=csrf_token]")["value"]
    before = _batch(sessions, batch_id)

    # A reason that says nothing is refused beside its field; nothing changes.
    refused = web.post(
        f"/admin/batches/{batch_id}/notes",
        data={"note": "n1", "decision": "mask", "reason": "0123456789", "csrf_token": token},
    )
    assert refused.status_code == 422
    failed = _note_section(page(refused), "n1")
    error = failed.select_one("[data-testid=field-error]")
    assert (
        "in words" in error.text
        and error["id"] == failed.select_one("textarea")["aria-describedby"].split()[0]
    )
    assert failed.select_one("input[value=mask]").has_attr("checked")  # what the admin chose is kept
    after = _batch(sessions, batch_id)
    assert (after.staged, after.phi_report) == (before.staged, before.phi_report)
    assert "batch.note_mask" not in _actions(sessions)

    masked = web.post(
        f"/admin/batches/{batch_id}/notes",
        data={"note": "n1", "decision": "mask", "reason": WORDS, "csrf_token": token},
    )
    assert masked.status_code == 303
    excluded = web.post(
        f"/admin/batches/{batch_id}/notes",
        data={"note": "n3", "decision": "exclude", "reason": WORDS, "csrf_token": token},
    )
    assert excluded.status_code == 303
    html = page(web.get(f"/admin/batches/{batch_id}"))
    n1, n3 = _note_section(html, "n1"), _note_section(html, "n3")
    assert (n1["data-decision"], n3["data-decision"]) == ("mask", "exclude")
    assert [mark.text for mark in n1.select("[data-testid=phi-hit]")] == ["[NAME]", "[ID]", "[DATE]"]
    assert WORDS in n1.select_one("[data-testid=note-decided]").text
    assert n3.select("[data-testid=phi-hit]") == [] and n3.select_one("form") is None  # its text is gone
    assert html.select_one("[data-testid=undecided-count]").text == "0 awaiting a decision"
    assert html.select_one("#reason").get("required") is None  # every note decided: no reason needed
    assert "John Smith" not in html.text and "555-123-4567" not in html.text
    assert _actions(sessions)[-2:] == ["batch.note_mask", "batch.note_exclude"]

    released = web.post(f"/admin/batches/{batch_id}/release", data={"reason": "", "csrf_token": token})
    assert released.status_code == 303
    from app.db.models import Document

    with sessions() as db:
        stored = dict(db.execute(select(Document.external_id, Document.text)).all())
    assert stored == {"n1": "Patient: [NAME], MRN [ID], seen [DATE]", "n2": CLEAN}
    kept = page(web.get(f"/admin/batches/{batch_id}")).select_one("[data-testid=batch-kept]").text
    assert " ".join(kept.split()) == (
        "Released on 2026-11-22 09:00 UTC by admin: the 2 notes are in project medications (1 excluded note "
        "was not imported and its text is erased); the uploaded files are not kept."
    )


def test_rejecting_asks_first_and_a_post_without_the_confirmation_changes_nothing(web, accounts, sessions):
    log_in(web, "admin")
    batch_id, _ = _held_batch(web, sessions)
    html = page(web.get(f"/admin/batches/{batch_id}"))
    dialog = html.select_one("dialog[data-testid=reject-dialog]")
    assert "erases its 3 notes" in dialog.text
    assert dialog.select_one("input[name=confirm]")["value"] == "yes"
    ask = html.select_one("form[data-confirm-dialog=reject-dialog]")
    assert ask.select_one("input[name=confirm]") is None  # the page's own button only asks
    token = ask.select_one("input[name=csrf_token]")["value"]
    for stray in ({}, {"confirm": "no"}, {"confirm": "true"}):
        response = web.post(f"/admin/batches/{batch_id}/reject", data={**stray, "csrf_token": token})
        assert response.status_code == 200
        step = page(response).select_one("[data-testid=reject-confirm-step]")
        assert "erases its 3 notes" in step.text and step.select_one("input[name=confirm]")["value"] == "yes"
        batch = _batch(sessions, batch_id)
        assert batch.status == "held" and len(batch.staged["documents"]) == 3
    assert "batch.reject" not in _actions(sessions)
    rejected = web.post(f"/admin/batches/{batch_id}/reject", data={"confirm": "yes", "csrf_token": token})
    assert rejected.status_code == 303
    assert (_batch(sessions, batch_id).status, _batch(sessions, batch_id).staged) == ("rejected", None)
    assert _actions(sessions)[-1] == "batch.reject"
    html = page(web.get(f"/admin/batches/{batch_id}"))
    assert html.select_one("[data-testid=batch-kept]").text.startswith(
        "Rejected on 2026-11-22 09:00 UTC by admin"
    )
    assert "no longer kept" not in html.text
    again = web.post(f"/admin/batches/{batch_id}/reject", data={"confirm": "yes", "csrf_token": token})
    assert (
        again.status_code == 409 and "not held" in page(again).select_one("[data-testid=release-error]").text
    )


def test_an_upload_that_adds_nothing_says_so_and_makes_no_batch(web, accounts, sessions):
    from app.db.models import Batch
    from app.services.projects import create_project

    log_in(web, "admin")
    project = create_project(sessions, "medications", SCHEMA)

    def send():
        return web.post(
            "/admin/batches",
            files=[("files", ("n2.txt", CLEAN.encode(), "text/plain"))],
            data={"project_id": str(project.id), "layer": "pre:x", "csrf_token": session_csrf(web)},
        )

    assert send().status_code == 200
    response = send()
    assert response.status_code == 200
    outcome = page(response).select_one("[data-testid=upload-outcome]")
    assert outcome["data-status"] == "unchanged"
    assert outcome.select_one("h2").text == "Nothing to add: no batch was made"
    assert outcome.select_one("[data-testid=upload-nothing-new]").text.startswith(
        "1 note is in the project already with the same text"
    )
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(Batch)) == 1


def test_lead_pickers_offer_neither_held_rejected_nor_empty_batches(web, accounts, sessions, runtime):
    from app.services.batches import reject_batch, upload_batch

    log_in(web, "admin")
    held, project_id = _held_batch(web, sessions, [("n1.txt", PHI)])
    rejected = upload_batch(
        sessions, runtime.settings, project_id, [("r.txt", OTHER_PHI.encode())], actor_id=None
    )
    reject_batch(sessions, rejected.batch_id, actor_id=None, now=datetime(2026, 11, 22, tzinfo=UTC))
    stored = upload_batch(sessions, runtime.settings, project_id, [("s.txt", CLEAN.encode())], actor_id=None)
    layers_only = upload_batch(
        sessions, runtime.settings, project_id,
        [("s.txt", CLEAN.encode()), ("s.ann", b"T1\tDrug 0 7\tAspirin\n")], actor_id=None, layer="gold",
    )  # fmt: skip
    assert (layers_only.status, layers_only.stored) == ("accepted", 0)
    for path, select_id in (("runs", "run-notes"), ("study", "study-batch"), ("dashboard", "filter-batch")):
        html = page(web.get(f"/lead/projects/{project_id}/{path}"))
        offered = [o["value"] for o in html.select(f"#{select_id} option") if o["value"]]
        assert offered == [str(stored.batch_id)], (path, offered, held, rejected.batch_id)


def test_a_decision_on_no_flagged_note_or_a_decided_batch_says_why(web, accounts, sessions):
    log_in(web, "admin")
    batch_id, _ = _held_batch(web, sessions, [("n1.txt", PHI), ("n2.txt", CLEAN)])
    token = session_csrf(web)
    unknown = web.post(
        f"/admin/batches/{batch_id}/notes",
        data={"note": "n2", "decision": "exclude", "reason": WORDS, "csrf_token": token},
    )
    assert unknown.status_code == 422
    assert (
        page(unknown).select_one("[data-testid=release-error]").text
        == f"note: 'n2' is not a flagged note of batch {batch_id}"
    )
    assert (
        web.post(
            f"/admin/batches/{batch_id}/reject", data={"confirm": "yes", "csrf_token": token}
        ).status_code
        == 303
    )
    late = web.post(
        f"/admin/batches/{batch_id}/notes",
        data={"note": "n1", "decision": "exclude", "reason": WORDS, "csrf_token": token},
    )
    assert late.status_code == 409
    assert (
        page(late).select_one("[data-testid=release-error]").text
        == f"batch {batch_id} is not held for review"
    )
    assert _actions(sessions).count("batch.note_exclude") == 0
    assert web.post("/admin/batches/999999/notes", data={"csrf_token": token}).status_code == 404
