"""The leads of a project, on its page: who they are, adding one by user name, taking one off; each
change audited, every refusal naming the field and storing nothing."""

import pytest
from sqlalchemy import func, select

from app.db.models import AuditEvent, ProjectMember, User
from app.services.projects import create_project
from tests.conftest import log_in, page, session_csrf

SCHEMA = {"entity_types": [{"name": "Drug", "color": "#1f77b4", "hotkey": "d"}]}


@pytest.fixture
def project(sessions, accounts, password_hashes) -> int:
    """A project its creator ("lead") leads, and two more accounts: another lead and a disabled one."""
    with sessions.begin() as db:
        db.add(
            User(
                username="lead.two", display_name="Dr Two", role="lead", password_hash=password_hashes["lead"]
            )
        )
        db.add(
            User(
                username="lead.gone",
                display_name="Dr Gone",
                role="lead",
                password_hash=password_hashes["lead"],
                is_active=False,
            )
        )
    return create_project(sessions, "Cardiology", SCHEMA, actor_id=accounts["lead"].id).id


def _leads(sessions, project_id: int) -> list[str]:
    with sessions() as db:
        return sorted(
            db.scalars(
                select(User.username)
                .join(ProjectMember, ProjectMember.user_id == User.id)
                .where(ProjectMember.project_id == project_id)
            )
        )


def _audit(sessions, action: str) -> list[dict]:
    with sessions() as db:
        return [
            {"who": who, "object_id": e.object_id, **e.details}
            for e, who in db.execute(
                select(AuditEvent, User.username)
                .join(User, User.id == AuditEvent.user_id)
                .where(AuditEvent.action == action)
                .order_by(AuditEvent.id)
            )
        ]


def _user_id(sessions, username: str) -> int:
    with sessions() as db:
        return db.scalar(select(User.id).where(User.username == username))


def test_the_project_page_lists_its_leads(web, sessions, project):
    log_in(web, "lead")
    html = page(web.get(f"/lead/projects/{project}"))
    assert [r["data-username"] for r in html.select("[data-testid=lead-row]")] == ["lead"]
    assert html.select_one("[data-testid=add-lead-form] input[name=csrf_token]")["value"]


def test_a_lead_adds_another_lead_who_then_sees_the_project(web, sessions, project):
    log_in(web, "lead")
    response = web.post(
        f"/lead/projects/{project}/leads", data={"csrf_token": session_csrf(web), "username": " Lead.Two "}
    )
    assert response.status_code == 303 and response.headers["location"] == f"/lead/projects/{project}#leads"
    assert _leads(sessions, project) == ["lead", "lead.two"]
    assert _audit(sessions, "project.lead_add") == [
        {
            "who": "lead",
            "object_id": str(project),
            "lead": "lead.two",
            "lead_id": _user_id(sessions, "lead.two"),
        }
    ]
    rows = page(web.get(f"/lead/projects/{project}")).select("[data-testid=lead-row]")
    assert [r["data-username"] for r in rows] == ["lead", "lead.two"]
    web.cookies.clear()
    log_in(web, "lead.two", "lead-password")
    assert web.get(f"/lead/projects/{project}").status_code == 200
    assert [
        a.text
        for a in page(web.get("/lead")).select("[data-testid=project-row] td:first-child > a:first-child")
    ] == ["Cardiology"]


@pytest.mark.parametrize(
    ("username", "problem"),
    [
        ("", "username: the user name of a lead"),
        ("nobody", "username: no account 'nobody'"),
        ("annotator", "username: 'annotator' is not a lead (their role is annotator)"),
        ("admin", "username: 'admin' is not a lead (their role is admin)"),
        ("lead.gone", "username: the account 'lead.gone' is disabled"),
        ("lead", "username: 'lead' already leads this project"),
    ],
)
def test_adding_anyone_but_an_active_lead_is_refused_and_stores_nothing(
    web, sessions, project, username, problem
):
    log_in(web, "lead")
    response = web.post(
        f"/lead/projects/{project}/leads", data={"csrf_token": session_csrf(web), "username": username}
    )
    assert response.status_code == 422
    html = page(response)
    assert html.select_one("[data-testid=lead-problem]").text == f"Nothing was changed: {problem}"
    assert html.select_one("#lead-username")["value"] == username
    assert html.select_one("#lead-username")["aria-invalid"] == "true"
    assert _leads(sessions, project) == ["lead"]
    assert _audit(sessions, "project.lead_add") == []


def test_a_lead_takes_another_lead_off_the_project(web, sessions, project):
    other = _user_id(sessions, "lead.two")
    with sessions.begin() as db:
        db.add(ProjectMember(project_id=project, user_id=other))
    log_in(web, "lead")
    response = web.post(
        f"/lead/projects/{project}/leads/{other}/remove", data={"csrf_token": session_csrf(web)}
    )
    assert response.status_code == 303 and response.headers["location"] == f"/lead/projects/{project}#leads"
    assert _leads(sessions, project) == ["lead"]
    assert _audit(sessions, "project.lead_remove") == [
        {"who": "lead", "object_id": str(project), "lead": "lead.two", "lead_id": other}
    ]
    web.cookies.clear()
    log_in(web, "lead.two", "lead-password")
    refused = web.get(f"/lead/projects/{project}")
    assert refused.status_code == 403 and "You are not a lead of this project." in refused.text


def test_a_lead_who_leaves_goes_back_to_their_projects(web, sessions, accounts, project):
    with sessions.begin() as db:
        db.add(ProjectMember(project_id=project, user_id=_user_id(sessions, "lead.two")))
    log_in(web, "lead")
    response = web.post(
        f"/lead/projects/{project}/leads/{accounts['lead'].id}/remove", data={"csrf_token": session_csrf(web)}
    )
    assert response.status_code == 303 and response.headers["location"] == "/lead"
    assert _leads(sessions, project) == ["lead.two"]
    assert page(web.get("/lead")).select("[data-testid=project-row]") == []


def test_the_last_lead_stays_and_a_non_lead_cannot_be_removed(web, sessions, accounts, project):
    log_in(web, "lead")
    csrf = session_csrf(web)
    response = web.post(
        f"/lead/projects/{project}/leads/{accounts['lead'].id}/remove", data={"csrf_token": csrf}
    )
    assert response.status_code == 422
    assert page(response).select_one("[data-testid=lead-problem]").text == (
        "Nothing was changed: lead: 'lead' is the project's only lead; add another lead first"
    )
    not_a_member = _user_id(sessions, "lead.two")
    for user_id in (not_a_member, accounts["annotator"].id, 999_999):
        response = web.post(f"/lead/projects/{project}/leads/{user_id}/remove", data={"csrf_token": csrf})
        assert response.status_code == 404
    assert _leads(sessions, project) == ["lead"]
    with sessions() as db:
        assert db.scalar(select(func.count()).where(AuditEvent.action == "project.lead_remove")) == 0


def test_an_admin_manages_the_leads_of_any_project(web, sessions, project):
    log_in(web, "admin")
    csrf = session_csrf(web)
    assert (
        web.post(
            f"/lead/projects/{project}/leads", data={"csrf_token": csrf, "username": "lead.two"}
        ).status_code
        == 303
    )
    first = _user_id(sessions, "lead")
    assert (
        web.post(f"/lead/projects/{project}/leads/{first}/remove", data={"csrf_token": csrf}).status_code
        == 303
    )
    assert _leads(sessions, project) == ["lead.two"]
    assert [
        e["who"] for e in _audit(sessions, "project.lead_add") + _audit(sessions, "project.lead_remove")
    ] == [
        "admin",
        "admin",
    ]
