"""The lead's dashboard in Chromium at 1280x800 on the demo (issue 20): no sideways scroll of the page,
charts with text alternatives, a folded section that loads its table when clicked, with the filters."""

from axe_support import axe_violations, describe
from e2e_support import log_in
from playwright.sync_api import expect

from app.demo.seed import DEMO_PROJECT

CHARTS = ("time-chart", "edit-mix-chart", "agreement-chart")
# Where the demo has nothing to draw yet, the summary says so in words instead of a chart.
CHART_WORDS = {"edit-mix-chart": "edit-mix-chart-missing", "agreement-chart": "agreement-chart-missing"}


def test_the_dashboard_fits_1280_and_opens_a_section_on_click(browser, demo_server):
    context = browser.new_context(
        base_url=demo_server, viewport={"width": 1280, "height": 800}, bypass_csp=True
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        log_in(page, "lead", "demo-lead")
        row = page.get_by_test_id("project-row").filter(has_text=DEMO_PROJECT)
        with page.expect_navigation():
            row.get_by_test_id("project-dashboard").click()
        expect(page.get_by_test_id("summary-savings")).to_be_visible()  # the answer on the first screen
        assert page.get_by_test_id("summary-savings").bounding_box()["y"] < 800
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1] == 1280, widths

        # Each chart is an image with a title and a description, or the words that say why it is missing.
        for chart in CHARTS:
            svg = page.locator(f"svg[data-testid={chart}]")
            if svg.count() == 0:
                expect(page.get_by_test_id(CHART_WORDS[chart])).to_be_visible()
                continue
            expect(svg).to_have_attribute("role", "img")
            title_id, desc_id = svg.get_attribute("aria-labelledby").split()
            assert svg.locator(f"title#{title_id}").text_content().strip()
            assert svg.locator(f"desc#{desc_id}").text_content().strip()
        assert page.locator("svg[data-testid=time-chart]").count() == 1

        # A folded section loads its table the first time it is opened.
        agreement = page.get_by_test_id("agreement-section")
        expect(agreement.get_by_test_id("agreement-matrix")).to_have_count(0)
        agreement.locator("summary").click()
        expect(agreement.get_by_test_id("agreement-matrix")).to_be_visible()
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], widths
        problems = axe_violations(page, context="#main")
        assert problems == [], describe(problems)

        # The filter form swaps the figures in place; a section opened afterwards has the same filters.
        page.fill("#filter-idle", "120")
        page.get_by_test_id("apply-filters").click()
        expect(page.get_by_test_id("idle-threshold")).to_have_text("120")
        assert "idle=120" in page.url
        time = page.get_by_test_id("time-section")
        time.locator("summary").click()
        expect(time.get_by_test_id("time-detail-table")).to_be_visible()
        expect(time.get_by_test_id("time-section-body")).to_contain_text("idle threshold of 120 s")
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], widths
    finally:
        context.close()
