"""The admin's vocabulary page: upload through the form, errors naming line and field, attach and detach."""

import pytest
from sqlalchemy import func, select

from app.db.models import AuditEvent, Concept, ConceptTerm, ProjectVocabulary, Vocabulary
from app.services.projects import create_project
from tests.conftest import log_in, page, session_csrf

PAGE = "/admin/vocabularies"
DRUGS = (
    "code\tpreferred_term\tsynonyms\tsemantic_type\n"
    "6809\tMetformin\tGlucophage|metformin hydrochloride\tIngredient\n"
    "1191\tAspirin\tASA\tIngredient\n"
)
SCHEMA = {"entity_types": [{"name": "Drug", "color": "#1f77b4"}]}


def upload(web, content: str | bytes, *, file_name="drugs.tsv", name="RxNorm subset", system="RxNorm"):
    data = content.encode() if isinstance(content, str) else content
    return web.post(
        PAGE,
        data={"name": name, "system": system, "version": "2026-11", "csrf_token": session_csrf(web, PAGE)},
        files={"file": (file_name, data, "text/tab-separated-values")},
    )


def stored(sessions) -> tuple[int, int, int]:
    with sessions() as db:
        return tuple(
            db.scalar(select(func.count()).select_from(table)) for table in (Vocabulary, Concept, ConceptTerm)
        )


def test_the_admin_uploads_a_vocabulary_and_sees_it_listed(web, accounts, sessions):
    log_in(web, "admin")
    response = upload(web, DRUGS)
    assert response.status_code == 303
    html = page(web.get(response.headers["location"]))
    assert "2 concepts, 5 terms" in html.select_one("[data-testid=upload-outcome]").text
    [row] = html.select("[data-testid=vocabulary-row]")
    cells = [td.get_text(" ", strip=True) for td in row.select("td")]
    assert cells[0] == "RxNorm subset drugs.tsv"
    assert cells[1:5] == ["RxNorm", "2026-11", "2", "5"]
    assert cells[6] == "admin"
    assert stored(sessions) == (1, 2, 5)
    with sessions() as db:
        assert db.scalar(select(AuditEvent.client_address).where(AuditEvent.action == "vocabulary.uploaded"))


def test_a_bad_file_shows_its_line_and_field_and_stores_nothing(web, accounts, sessions):
    log_in(web, "admin")
    response = upload(web, DRUGS + "1191\tAspirin 81\t\t\n\tNo code\t\t\n")
    assert response.status_code == 422
    error = page(response).select_one("[data-testid=upload-error]")
    assert error["data-field"] == "file"
    problems = [li.text for li in error.select("li")]
    assert problems == [
        "drugs.tsv, line 4, field 'code': code '1191' is already on line 3",
        "drugs.tsv, line 5, field 'code': the code is empty",
    ]
    # What was typed stays in the form.
    assert page(response).select_one("#vocabulary-name")["value"] == "RxNorm subset"
    assert stored(sessions) == (0, 0, 0)


def test_undecodable_bytes_name_the_line(web, accounts, sessions):
    log_in(web, "admin")
    response = upload(web, b"code,preferred_term,synonyms\n1,Caf\xe9ine,\n", file_name="latin1.csv")
    assert response.status_code == 422
    error = page(response).select_one("[data-testid=upload-error]").get_text(strip=True)
    assert error.startswith("latin1.csv, line 2, field 'preferred_term': byte 0xe9 is not UTF-8")
    assert stored(sessions) == (0, 0, 0)


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"name": ""}, "name"), ({"system": ""}, "system"), ({"system": "Rx:Norm"}, "system")],
)
def test_a_bad_field_is_named(web, accounts, sessions, fields, field):
    log_in(web, "admin")
    response = upload(web, DRUGS, **fields)
    assert response.status_code == 422
    error = page(response).select_one("[data-testid=upload-error]")
    assert error["data-field"] == field and error.text.strip().startswith(f"{field}:")
    assert stored(sessions) == (0, 0, 0)


def test_no_file_is_named(web, accounts, sessions):
    log_in(web, "admin")
    response = web.post(
        PAGE, data={"name": "X", "system": "RxNorm", "csrf_token": session_csrf(web, PAGE)}, files={}
    )
    assert response.status_code == 422
    assert page(response).select_one("[data-testid=upload-error]")["data-field"] == "file"


def test_a_duplicate_name_is_refused_on_the_page(web, accounts, sessions):
    log_in(web, "admin")
    assert upload(web, DRUGS).status_code == 303
    response = upload(web, DRUGS)
    assert response.status_code == 422
    assert "exists" in page(response).select_one("[data-testid=upload-error]").text
    assert stored(sessions) == (1, 2, 5)


def test_the_admin_attaches_and_detaches_a_project(web, accounts, sessions):
    project = create_project(sessions, "Trials", SCHEMA, actor_id=accounts["admin"].id)
    log_in(web, "admin")
    upload(web, DRUGS)
    with sessions() as db:
        vocabulary_id = db.scalar(select(Vocabulary.id))
    html = page(web.get(PAGE))
    form = html.select_one("[data-testid=attach-form]")
    assert [o["value"] for o in form.select("option")] == [str(project.id)]
    response = web.post(
        form["action"], data={"project_id": project.id, "csrf_token": session_csrf(web, PAGE)}
    )
    assert response.status_code == 303
    html = page(web.get(PAGE))
    assert [li["data-project-id"] for li in html.select("[data-testid=attached-projects] li")] == [
        str(project.id)
    ]
    assert html.select_one("[data-testid=attach-form]") is None  # no project left to attach to
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(ProjectVocabulary)) == 1

    detach = html.select_one("[data-testid=attached-projects] form")["action"]
    assert detach == f"{PAGE}/{vocabulary_id}/projects/{project.id}/detach"
    assert web.post(detach, data={"csrf_token": session_csrf(web, PAGE)}).status_code == 303
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(ProjectVocabulary)) == 0
        actions = db.scalars(
            select(AuditEvent.action).where(AuditEvent.action.like("vocabulary.%")).order_by(AuditEvent.id)
        ).all()
    assert actions == ["vocabulary.uploaded", "vocabulary.attached", "vocabulary.detached"]


def test_attaching_to_a_missing_project_names_the_field(web, accounts, sessions):
    log_in(web, "admin")
    upload(web, DRUGS)
    with sessions() as db:
        vocabulary_id = db.scalar(select(Vocabulary.id))
    response = web.post(
        f"{PAGE}/{vocabulary_id}/projects", data={"project_id": 4242, "csrf_token": session_csrf(web, PAGE)}
    )
    assert response.status_code == 422
    assert page(response).select_one("[data-testid=upload-error]")["data-field"] == "project_id"


def test_the_admin_navigation_links_the_page(web, accounts):
    log_in(web, "admin")
    assert page(web.get("/admin")).select_one("[data-testid=nav-vocabularies]")["href"] == PAGE


def test_an_upload_without_its_csrf_token_is_refused(web, accounts, sessions):
    log_in(web, "admin")
    response = web.post(
        PAGE,
        data={"name": "X", "system": "RxNorm"},
        files={"file": ("drugs.tsv", DRUGS.encode(), "text/plain")},
    )
    assert response.status_code == 403
    assert stored(sessions) == (0, 0, 0)


@pytest.mark.parametrize("role", ["lead", "annotator"])
def test_leads_and_annotators_may_not_open_or_post_to_the_page(web, accounts, sessions, role):
    log_in(web, role)
    assert web.get(PAGE).status_code == 403
    csrf = session_csrf(web)
    response = web.post(
        PAGE,
        data={"name": "X", "system": "RxNorm", "csrf_token": csrf},
        files={"file": ("drugs.tsv", DRUGS.encode(), "text/plain")},
    )
    assert response.status_code == 403
    assert web.post(f"{PAGE}/1/projects", data={"project_id": 1, "csrf_token": csrf}).status_code == 403
    assert stored(sessions) == (0, 0, 0)
    assert page(web.get("/account/tokens")).select_one("[data-testid=nav-vocabularies]") is None


def test_logged_out_visitors_are_sent_to_the_login(web):
    response = web.get(PAGE)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
