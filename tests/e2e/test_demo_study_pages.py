"""What a newcomer sees on first opening the demo (issue 20): the dashboard answers with figures the app
computed from the simulated finished study, and the audit trail pages and filters by action prefix."""

import re
from pathlib import Path

from e2e_support import log_in
from playwright.sync_api import expect

from app.demo.seed import DEMO_PROJECT

SHOTS = Path("/tmp/shots")


def test_the_demo_dashboard_shows_the_finished_study_figures(browser, demo_server):
    context = browser.new_context(base_url=demo_server, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        log_in(page, "lead", "demo-lead")
        expect(page.get_by_test_id("simulated-study-notice")).to_contain_text("simulated")
        row = page.get_by_test_id("project-row").filter(has_text=DEMO_PROJECT)
        with page.expect_navigation():
            row.get_by_test_id("project-dashboard").click()
        savings = page.get_by_test_id("summary-savings")
        # A figure with its interval, not words saying it cannot be computed yet.
        expect(savings.locator("[data-figure=savings] [data-value]")).to_have_text(re.compile(r"^\d+\.\d%$"))
        expect(savings.locator("[data-figure=savings_ci] [data-low]")).to_be_visible()
        expect(page.get_by_test_id("summary-agreement").locator("[data-na]")).to_have_count(0)
        table = page.get_by_test_id("time-table")
        for condition in ("scratch", "refine_llm", "refine_human"):
            expect(table.locator("tr", has_text=condition).first).to_contain_text(re.compile(r"\d+\.\d"))
        attention = page.get_by_test_id("awaiting-adjudication")
        assert int(attention.get_attribute("data-count")) >= 1
        if SHOTS.is_dir():  # for the person who looks at the page, when a shots folder is there
            page.screenshot(path=str(SHOTS / "demo-dashboard-summary.png"))
    finally:
        context.close()


def test_the_audit_trail_filters_by_action_prefix_and_shows_its_range(browser, demo_server):
    context = browser.new_context(base_url=demo_server, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        log_in(page, "admin", "demo-admin")
        page.goto("/admin/audit")
        expect(page.get_by_test_id("audit-range")).to_have_text(re.compile(r"^1–\d+$"))
        page.fill("#filter-action", "login")  # a first part, without the dot
        with page.expect_navigation():
            page.get_by_test_id("audit-show").click()
        actions = page.get_by_test_id("audit-row").evaluate_all("rows => rows.map((r) => r.dataset.action)")
        assert actions and all(action.startswith("login.") for action in actions), actions
    finally:
        context.close()


def test_the_export_form_asks_what_becomes_of_undecided_pre_labels(browser, demo_server, demo_db):
    """The lead's export of a physician's layer, in Chromium: left out by default, marked on request;
    the choice travels with the queued job (tests/services/test_export_undecided.py checks the files)."""
    from sqlalchemy import text

    context = browser.new_context(base_url=demo_server, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        log_in(page, "lead", "demo-lead")
        row = page.get_by_test_id("project-row").filter(has_text=DEMO_PROJECT)
        with page.expect_navigation():
            row.locator("a").first.click()
        form = page.get_by_test_id("export-form")
        undecided = form.get_by_label("Undecided pre-labels")
        expect(undecided).to_have_value("exclude")
        form.get_by_label("Format").select_option("brat")
        form.get_by_label("Layer").fill("annotator:dr.adams")
        undecided.select_option("mark")
        with page.expect_response(lambda r: r.url.endswith("/exports") and r.request.method == "POST"):
            form.get_by_test_id("start-export").click()
        expect(page.get_by_test_id("export-row").first).to_contain_text("annotator:dr.adams")
        with demo_db() as db:
            args = db.execute(
                text(
                    "SELECT args FROM procrastinate_jobs WHERE task_name = 'clinann.make_export' "
                    "ORDER BY id DESC LIMIT 1"
                )
            ).scalar_one()
        assert args["undecided"] == "mark"
    finally:
        context.close()
