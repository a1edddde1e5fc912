"""The admin home: accounts, adding one (errors name the field), the audit trail with names."""

from sqlalchemy import select

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
