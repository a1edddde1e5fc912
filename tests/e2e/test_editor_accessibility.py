"""The span editor under axe-core and at 200% zoom (issue 19), on the dense Chia note.

Checked: the open note with a span and a relation selected, the submit dialog, the closed note,
and the document questions; each at 1280x800 and at 200% zoom (a 640x400 CSS viewport drawn at
device scale 2, see test_accessibility). "Usable at 200%" is shown by doing the physician's work
there from the keyboard: select, relabel, accept, answer a question, submit.
"""

import time

import pytest
from axe_support import axe_violations, describe
from dense_support import build_dense_world, drop_dense_world, stored_labels
from e2e_support import log_in
from editor_support import PASSWORD, open_editor, selected_uid, settle, stored_status
from playwright.sync_api import expect

VIEWPORTS = {
    "1280x800": {"viewport": {"width": 1280, "height": 800}, "device_scale_factor": 1},
    "zoom200": {"viewport": {"width": 640, "height": 400}, "device_scale_factor": 2},
}
QUESTIONS = [
    {"key": "primary_diagnosis", "prompt": "Primary diagnosis", "kind": "text"},
    {"key": "eligible", "prompt": "Would this patient qualify?", "kind": "choice", "choices": ["yes", "no"]},
    {"key": "evidence", "prompt": "Which spans say so?", "kind": "evidence"},
]


@pytest.fixture(scope="module")
def password_hash() -> str:
    from app.services.users import hash_password

    return hash_password(PASSWORD)


@pytest.fixture(params=list(VIEWPORTS))
def editor(request, browser, demo_server, demo_db, password_hash):
    """(page on the dense note with questions, world), CSP lifted so that axe can be injected."""
    context = browser.new_context(base_url=demo_server, bypass_csp=True, **VIEWPORTS[request.param])
    context.set_default_timeout(10_000)
    world = build_dense_world(demo_db, password_hash, questions=QUESTIONS)
    page = context.new_page()
    log_in(page, world.username, PASSWORD)
    open_editor(page, world.set_id)
    yield page, world
    context.close()
    time.sleep(0.2)
    drop_dense_world(demo_db, world)


def no_violations(page, what: str) -> None:
    violations = axe_violations(page)
    assert not violations, f"{what} at {page.viewport_size}: {describe(violations)}"


def test_the_dense_editor_has_no_serious_or_critical_violations(editor):
    page, _ = editor
    no_violations(page, "open dense note")
    page.get_by_test_id("span-item").first.click()
    page.get_by_test_id("relation-arc").first.dispatch_event("click")
    no_violations(page, "span and relation selected")
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("submit-dialog")).to_be_visible()
    no_violations(page, "submit dialog")
    page.get_by_test_id("submit-accept").click()
    expect(page.get_by_test_id("set-status")).to_have_attribute("data-status", "submitted")
    expect(page.locator("#palette .palette-button").first).to_be_disabled()
    no_violations(page, "submitted note")


def test_the_whole_refinement_can_be_done_from_the_keyboard_at_this_size(editor, demo_db):
    page, world = editor
    # Nothing of the page is cut off sideways: it reflows rather than scrolling horizontally.
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page is {overflow} px wider than the window"
    # Tab selects the first span; "/" filters the labels, Enter relabels it with the first match.
    page.locator("#note-text").focus()
    page.keyboard.press("Tab")
    uid = selected_uid(page)
    assert uid is not None
    current = stored_labels(demo_db, world.set_id)[uid][0]
    target = next(
        label
        for label in world.labels
        if label != current
        and not any(label.lower() in other.lower() for other in world.labels if other != label)
    )
    page.keyboard.press("/")
    expect(page.get_by_test_id("palette-filter")).to_be_focused()
    page.keyboard.type(target)
    page.keyboard.press("Enter")
    dialog = page.get_by_test_id("relabel-relations")
    page.wait_for_timeout(300)
    if dialog.is_visible():  # the span had relations that no longer fit: drop them
        page.get_by_test_id("relabel-drop").focus()
        page.keyboard.press("Enter")
    settle(page)
    assert stored_labels(demo_db, world.set_id)[uid][0] == target
    # Tab to the next span and accept it with Enter.
    page.keyboard.press("Tab")
    accepted = selected_uid(page)
    assert accepted not in (None, uid)
    page.keyboard.press("Enter")
    settle(page)
    assert stored_labels(demo_db, world.set_id)[accepted][1] == "confirmed"
    # Answer the text question: the field is reachable and named by its question.
    answer = page.get_by_role("textbox", name="Primary diagnosis")
    answer.scroll_into_view_if_needed()
    answer.fill("lymphoma")
    answer.press("Tab")
    settle(page)
    # Submit from the keyboard, through the dialog.
    submit = page.get_by_test_id("submit")
    submit.focus()
    page.keyboard.press("Enter")
    accept = page.get_by_test_id("submit-accept")
    expect(accept).to_be_visible()
    accept.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("set-status")).to_have_attribute("data-status", "submitted")
    assert stored_status(demo_db, world.set_id) == "submitted"
