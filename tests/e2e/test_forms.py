"""Every form of the lead and admin pages keeps each label beside (or directly above) its control, the
run form's controls are not cut, and the schema editor adds, removes and reorders rows (issue 20).

The layout is measured in Chromium at 1280x800: a label tied to its control by ``for=`` is no help when
the control the eye finds beside it is another one.
"""

import re

from e2e_support import log_in

from app.demo.seed import DEMO_LOGINS

PASSWORDS = {username: password for _, username, password in DEMO_LOGINS}

# For each label tied to a control: its first line, the control's box, and every other visible label
# and control of the form, to tell which label the eye pairs with which control.
LAYOUT_SCRIPT = """
(form) => {
  const visible = (el) => {
    if (!el || el.closest('details:not([open])') && !el.matches('summary')) return false;
    const r = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && style.visibility !== 'hidden';
  };
  const box = (r) => ({left: r.left, right: r.right, top: r.top, bottom: r.bottom});
  const firstLine = (label) => {
    const range = document.createRange();
    range.selectNodeContents(label);
    const rects = [...range.getClientRects()].filter((r) => r.width > 0 && r.height > 0);
    const line = rects.length ? rects[0] : label.getBoundingClientRect();
    const whole = label.getBoundingClientRect();
    // The label's width (its column), the height of its first line: what the eye reads across from.
    return {left: Math.min(whole.left, line.left), right: Math.max(whole.right, line.right),
            top: line.top, bottom: line.bottom};
  };
  const controls = [...form.querySelectorAll('input:not([type=hidden]), select, textarea')].filter(visible);
  const labels = [...form.querySelectorAll('label[for]')].filter(visible);
  return {
    labels: labels.map((l) => ({text: l.textContent.trim().replace(/\\s+/g, ' '), for: l.htmlFor,
                                 line: firstLine(l), box: box(l.getBoundingClientRect())})),
    controls: controls.map((c) => ({id: c.id, box: box(c.getBoundingClientRect())})),
  };
}
"""


def _gap(a: dict, b: dict) -> float:
    """The shortest distance between two boxes (0 when they touch or overlap)."""
    dx = max(0.0, a["left"] - b["right"], b["left"] - a["right"])
    dy = max(0.0, a["top"] - b["bottom"], b["top"] - a["bottom"])
    return (dx * dx + dy * dy) ** 0.5


def layout_problems(layout: dict) -> list[str]:
    """What is wrong with the pairing of labels and controls, in words (empty: nothing)."""
    problems = []
    controls = {c["id"]: c["box"] for c in layout["controls"] if c["id"]}
    for label in layout["labels"]:
        control = controls.get(label["for"])
        name = f"'{label['text']}'"
        if control is None:
            problems.append(f"{name}: its control #{label['for']} is not visible")
            continue
        line = label["line"]
        middle = (line["top"] + line["bottom"]) / 2
        beside = control["top"] - 1 <= middle <= control["bottom"] + 1
        above = (
            label["box"]["bottom"] <= control["top"] + 1
            and control["top"] - label["box"]["bottom"] <= 12
            and abs(label["box"]["left"] - control["left"]) <= 8
        )
        if not (beside or above):
            problems.append(f"{name}: its first line is neither beside nor directly above #{label['for']}")
        own = _gap(line, control)
        for other in layout["labels"]:
            if other is not label and _gap(other["line"], control) <= own:
                problems.append(f"#{label['for']} is as near to '{other['text']}' as to its label {name}")
        for other_id, other_box in controls.items():
            if other_id != label["for"] and _gap(line, other_box) <= own:
                problems.append(f"{name} is as near to #{other_id} as to its control #{label['for']}")
    return problems


def _logged_in(page, username: str) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, username, PASSWORDS[username])


def _project_id(page) -> str:
    page.goto("/lead")
    href = page.locator("a[href^='/lead/projects/']:not([href$='/new'])").first.get_attribute("href")
    return re.match(r"/lead/projects/(\d+)", href).group(1)


def _check_forms(page, url: str, selectors: list[str]) -> list[str]:
    page.goto(url)
    problems = []
    for selector in selectors:
        form = page.locator(selector)
        assert form.count() == 1, f"{selector} on {url}"
        layout = form.evaluate(LAYOUT_SCRIPT)
        assert layout["labels"], f"{selector} on {url} has no labels to check"
        problems += [f"{url} {selector}: {p}" for p in layout_problems(layout)]
    return problems


def test_every_label_sits_beside_or_above_its_control(page):
    _logged_in(page, "lead")
    project = _project_id(page)
    problems = _check_forms(page, f"/lead/projects/{project}/study", ["[data-testid=study-form]"])
    problems += _check_forms(page, f"/lead/projects/{project}/runs", ["[data-testid=run-form]"])
    problems += _check_forms(page, f"/lead/projects/{project}", ["[data-testid=project-form]"])
    page.set_viewport_size({"width": 420, "height": 800})  # narrow: each label over its control
    problems += _check_forms(page, f"/lead/projects/{project}/study", ["[data-testid=study-form]"])
    page.context.clear_cookies()
    _logged_in(page, "admin")
    problems += _check_forms(page, "/admin/endpoints", ["[data-testid=endpoint-form]"])
    problems += _check_forms(page, "/admin/users", ["[data-testid=add-user]"])
    problems += _check_forms(page, "/account/password", ["[data-testid=change-password]"])
    assert not problems, "\n".join(problems)


# Each option's text set in the select's own font, against the room the closed select gives it.
FIT_SCRIPT = """
(form) => {
  const canvas = document.createElement('canvas').getContext('2d');
  return [...form.querySelectorAll('select')].map((select) => {
    const style = getComputedStyle(select);
    canvas.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const padding = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
    const room = select.clientWidth - padding - 20;  // 20 px: the arrow
    const widest = Math.max(...[...select.options].map((o) => canvas.measureText(o.text).width));
    return {id: select.id, scroll: select.scrollWidth, client: select.clientWidth, room, widest};
  });
}
"""


def test_the_run_form_cuts_nothing(page):
    _logged_in(page, "lead")
    page.goto(f"/lead/projects/{_project_id(page)}/runs")
    form = page.locator("[data-testid=run-form]")
    selects = form.evaluate(FIT_SCRIPT)
    assert {s["id"] for s in selects} >= {"run-method", "run-notes", "run-endpoint", "run-schema"}
    for select in selects:
        assert select["scroll"] <= select["client"] + 1, select
        assert select["widest"] <= select["room"], select  # "Simulate", "ensembl" were cut
    assert page.get_by_test_id("run-llm").bounding_box()["width"] >= 240
    assert page.locator("#run-endpoint").bounding_box()["width"] >= 240


VALUES = "(inputs) => inputs.map((i) => i.value)"


def test_the_schema_editor_adds_removes_and_reorders_rows(page, demo_db):
    from sqlalchemy import select

    from app.db.models import Project

    _logged_in(page, "lead")
    name = f"Forms e2e {id(page)}"
    page.goto("/lead/projects/new")
    page.fill("#name", name)
    entities = page.locator("table[data-rows=entities] tbody tr")
    assert entities.count() == 2  # the starting label and one empty row (the script drops the others)
    entities.nth(1).locator("input[name=entity_name]").fill("Drug")
    page.get_by_test_id("add-entity").click()
    page.get_by_test_id("add-entity").click()
    assert entities.count() == 4
    entities.nth(2).locator("input[name=entity_name]").fill("Dose")
    entities.nth(3).locator("input[name=entity_name]").fill("Route")
    colours = entities.locator("input[name=entity_color]").evaluate_all(VALUES)
    assert len(set(colours)) == 4, colours  # every new label its own colour
    entities.nth(2).locator("[data-row-action=remove]").click()  # Dose
    entities.nth(2).locator("[data-row-action=up]").click()  # Route above Drug
    assert entities.nth(1).get_attribute("data-testid") == "entity-row"
    assert entities.nth(1).locator("input[name=entity_name]").get_attribute("aria-label") == "Label name 2"
    page.get_by_test_id("add-relation").click()
    relation = page.locator("table[data-rows=relations] tbody tr").last
    relation.locator("input[name=relation_name]").fill("Route-Drug")
    relation.locator("input[name=relation_heads]").fill("Route")
    relation.locator("input[name=relation_tails]").fill("Drug")
    with page.expect_navigation():
        page.get_by_test_id("save-project").click()
    assert "saved=1" in page.url
    with demo_db() as db:
        schema = db.scalar(select(Project).where(Project.name == name)).label_schema
    assert [e["name"] for e in schema["entity_types"]] == ["Entity", "Route", "Drug"]
    assert len({e["color"] for e in schema["entity_types"]}) == 3
    assert schema["relation_types"] == [
        {"name": "Route-Drug", "head_types": ["Route"], "tail_types": ["Drug"], "description": ""}
    ]
    # the page shows what was stored, in that order
    names = page.locator("table[data-rows=entities] input[name=entity_name]")
    assert names.evaluate_all(VALUES)[:3] == ["Entity", "Route", "Drug"]
