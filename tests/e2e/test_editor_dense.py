"""The editor on a dense note (issue 19): a Chia criterion with 54 overlapping pre-labels, 28
relations and 24+ labels. Every test checks the page and, where it edits, PostgreSQL.

Set CLINANN_SCREENSHOTS=DIR to keep 1280x800 screenshots of what the tests saw.
"""

import os
import re
import time
from pathlib import Path

import pytest
from dense_support import build_dense_world, drop_dense_world, stored_labels, stored_relations
from e2e_support import log_in
from editor_support import PASSWORD, open_editor, selected_uid, settle
from playwright.sync_api import expect

SHOTS = os.environ.get("CLINANN_SCREENSHOTS")


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


@pytest.fixture(scope="module")
def password_hash() -> str:
    from app.services.users import hash_password

    return hash_password(PASSWORD)


@pytest.fixture
def dense(browser, demo_server, demo_db, password_hash):
    """(page at 1280x800 on the dense note, world, make): ``make(settings)`` builds another world."""
    context = browser.new_context(base_url=demo_server, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    worlds = []

    def make(study_settings=None):
        world = build_dense_world(demo_db, password_hash, study_settings=study_settings)
        worlds.append(world)
        return world

    world = make()
    log_in(page, world.username, PASSWORD)
    open_editor(page, world.set_id)
    yield page, world, make
    context.close()
    time.sleep(0.2)
    for w in worlds:
        drop_dense_world(demo_db, w)


def test_every_span_carries_its_label_and_every_relation_is_an_arc(dense):
    page, world, _ = dense
    tags = page.locator("[data-testid=span-tag]")
    expect(tags).to_have_count(54)
    expect(page.locator("[data-testid=relation-arc]")).to_have_count(28)
    shot(page, "dense-full")
    # Tags name the label (or a short form of it) and give the full name on hover.
    titles = tags.evaluate_all("els => els.map(e => e.title)")
    texts = tags.evaluate_all("els => els.map(e => e.textContent)")
    assert all(t.split(" (")[0] in world.labels for t in titles)
    assert sum(1 for t, title in zip(texts, titles, strict=True) if t == title.split(" (")[0]) >= 20
    # Overlapping spans sit on separate lanes: no two tags overlap each other.
    boxes = tags.evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect();"
        " return [r.left, r.top, r.right, r.bottom]; })"
    )
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not (
                a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5
            ), (a, b)
    # Pre-labelled relations are dashed; the arc carries its type.
    arc = page.locator("[data-testid=relation-arc]").first
    assert arc.evaluate("g => getComputedStyle(g.querySelector('path')).strokeDasharray") not in ("none", "")
    assert arc.locator("text").text_content() in world.relation_types


def test_compact_display_is_remembered_for_the_physician(dense):
    page, world, _ = dense
    tall = page.evaluate(
        "() => parseFloat(getComputedStyle(document.getElementById('note-text')).lineHeight)"
    )
    page.get_by_test_id("display-toggle").click()
    expect(page.get_by_test_id("display-toggle")).to_have_attribute("aria-pressed", "true")
    short = page.evaluate(
        "() => parseFloat(getComputedStyle(document.getElementById('note-text')).lineHeight)"
    )
    assert short < tall
    shot(page, "dense-compact")
    page.wait_for_timeout(300)  # the preference is saved in the background
    page.reload()
    page.wait_for_function("() => document.body.dataset.editorReady === 'true'")
    expect(page.get_by_test_id("display-toggle")).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("() => document.querySelector('.editor').dataset.display") == "compact"


def test_clicking_an_arc_selects_the_relation_and_highlights_its_spans(dense, demo_db):
    page, world, _ = dense
    arc = page.locator("[data-testid=relation-arc] text").first
    uid = page.locator("[data-testid=relation-arc]").first.get_attribute("data-uid")
    arc.click()
    item = page.locator(f"#relation-list > li[data-uid='{uid}']")
    expect(item).to_have_class(re.compile(r"\bselected\b"))
    expect(page.locator(f"[data-testid=relation-arc][data-uid='{uid}']")).to_have_class(
        re.compile(r"\bactive\b")
    )
    head, tail = item.get_attribute("data-head"), item.get_attribute("data-tail")
    for span_uid in (head, tail):
        expect(page.locator(f".tag[data-uid='{span_uid}']")).to_have_class(re.compile(r"\brelated\b"))
    shot(page, "dense-relation-selected")
    page.keyboard.press("Enter")  # accept the selected pre-labelled relation
    settle(page)
    assert stored_relations(demo_db, world.set_id)[uid][1] == "confirmed"


def test_dragging_a_tag_onto_another_creates_the_relation_chosen_among_those_that_fit(dense, demo_db):
    page, world, _ = dense
    before = set(stored_relations(demo_db, world.set_id))
    # A Measurement and a Value on the same line that no relation links yet: Has_value fits them
    # (and so do Chia's generic AND/OR types, so the editor asks which).
    pair = page.evaluate("""() => {
      const tags = [...document.querySelectorAll('.tag')].map(t => ({
        uid: t.dataset.uid, top: t.getBoundingClientRect().top,
        label: document.querySelector(`#span-list > li[data-uid="${t.dataset.uid}"]`).dataset.label}));
      const linked = new Set([...document.querySelectorAll('#relation-list > li')]
        .map(li => li.dataset.head + '>' + li.dataset.tail));
      const data = JSON.parse(document.getElementById('editor-data').textContent);
      const fits = (h, t, name) => data.relation_types.some(
        r => r.name === name && r.head_types.includes(h.label) && r.tail_types.includes(t.label));
      for (const h of tags) for (const t of tags)
        if (h.uid !== t.uid && Math.abs(h.top - t.top) < 120 && !linked.has(h.uid + '>' + t.uid)
            && fits(h, t, 'Has_value')) return [h.uid, t.uid];
      return null; }""")
    assert pair, "the dense note has two spans that Has_value could link"
    head, tail = pair
    page.locator(f".tag[data-uid='{head}']").scroll_into_view_if_needed()
    source = page.locator(f".tag[data-uid='{head}']").bounding_box()
    goal = page.locator(f".tag[data-uid='{tail}']").bounding_box()
    page.mouse.move(source["x"] + 3, source["y"] + 3)
    page.mouse.down()
    page.mouse.move((source["x"] + goal["x"]) / 2, (source["y"] + goal["y"]) / 2, steps=4)
    page.mouse.move(goal["x"] + 3, goal["y"] + 3, steps=4)
    page.mouse.up()
    expect(page.get_by_test_id("relation-types")).to_be_visible()
    page.locator("[data-testid=relation-type-Has_value]").click()
    settle(page)
    added = {u: v for u, v in stored_relations(demo_db, world.set_id).items() if u not in before}
    assert list(added.values()) == [("Has_value", "confirmed")]
    expect(page.locator("[data-testid=relation-arc]")).to_have_count(29)


def test_relabel_offers_to_retype_or_drop_the_relations_and_undo_restores_them(dense, demo_db):
    page, world, _ = dense
    relations = page.evaluate("""() => [...document.querySelectorAll('#relation-list > li')]
        .map(li => [li.dataset.uid, li.dataset.type, li.dataset.head, li.dataset.tail])""")
    # The head of a Has_value relation (a Measurement, say) relabelled as something Has_value does
    # not start from.
    data = page.evaluate("() => JSON.parse(document.getElementById('editor-data').textContent)")
    types = {r["name"]: r for r in data["relation_types"]}
    labels = {
        li["uid"]: li["label"]
        for li in page.evaluate(
            "() => [...document.querySelectorAll('#span-list > li')]"
            ".map(li => ({uid: li.dataset.uid, label: li.dataset.label}))"
        )
    }
    target = None
    for uid, kind, head, _tail in relations:
        if kind == "Has_value":
            new = next(
                (e["name"] for e in data["labels"] if e["name"] not in types[kind]["head_types"]), None
            )
            target = (uid, head, new)
            break
    assert target and target[2]
    relation_uid, span_uid, new_label = target
    before = stored_relations(demo_db, world.set_id)
    page.locator(f"#span-list > li[data-uid='{span_uid}']").click()
    page.get_by_test_id("palette-filter").fill(new_label)
    page.get_by_test_id("palette-filter").press("Enter")
    dialog = page.get_by_test_id("relabel-relations")
    expect(dialog).to_be_visible()
    message = page.get_by_test_id("relabel-relations-text").text_content()
    assert "Has_value" in message and new_label in message
    # No internal id (span or relation uid) in what the physician reads.
    ids = set(world.uids.values()) | set(world.relation_uids.values())
    assert not any(i in message for i in ids), message
    shot(page, "dense-relabel-dialog")
    page.get_by_test_id("relabel-drop").click()
    settle(page)
    after = stored_relations(demo_db, world.set_id)
    assert relation_uid not in after and stored_labels(demo_db, world.set_id)[span_uid][0] == new_label
    assert len(before) - len(after) >= 1
    page.keyboard.press("Control+z")
    settle(page)
    assert stored_relations(demo_db, world.set_id) == before
    assert stored_labels(demo_db, world.set_id)[span_uid][0] == labels[span_uid]
    expect(page.locator("[data-testid=relation-arc]")).to_have_count(28)


def test_the_palette_filters_as_one_types_and_stays_small(dense):
    page, world, _ = dense
    palette = page.get_by_test_id("palette")
    assert palette.bounding_box()["height"] <= 100  # a few rows, not half the side bar, at 24 labels
    expect(page.locator(".palette-button")).to_have_count(len(world.labels))
    page.keyboard.press("/")
    expect(page.get_by_test_id("palette-filter")).to_be_focused()
    page.keyboard.type("tempo")
    expect(page.locator(".palette-button:visible")).to_have_count(1)
    expect(page.locator(".palette-button:visible")).to_have_attribute("data-label", "Temporal")
    kbd = page.locator(".palette-button kbd")
    assert kbd.count() >= 9  # hotkeys still shown


def test_the_caret_follows_a_click_and_stays_on_escape(dense):
    page, world, _ = dense
    text = world.text
    word = "measurable"
    start = text.index(word)
    # Click inside the word: the caret goes before it, and Shift+Right selects that word.
    point = page.evaluate(f"""() => {{
        const node = document.getElementById('note-text').firstChild;
        const range = document.createRange();
        const u = window.clinannEditor.cpToU16({start + 1});
        range.setStart(node, u); range.setEnd(node, u + 1);
        const r = range.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; }}""")
    page.mouse.click(*point)
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+ArrowRight")
    assert page.get_by_test_id("note-text").get_attribute("data-selection") == f"{start}-{start + len(word)}"
    # Esc clears the selection but keeps the caret after it: the next Shift+Right takes the next word.
    page.keyboard.press("Escape")
    assert page.get_by_test_id("note-text").get_attribute("data-selection") is None
    page.keyboard.press("Shift+ArrowRight")
    selected = page.get_by_test_id("note-text").get_attribute("data-selection")
    a, b = map(int, selected.split("-"))
    assert a >= start + len(word) and a - (start + len(word)) <= 2, (selected, text[a:b])


def test_the_span_stays_selected_after_an_attribute_is_set(dense, demo_db):
    page, world, _ = dense
    data = page.evaluate("() => JSON.parse(document.getElementById('editor-data').textContent)")
    if not data["attributes"]:
        pytest.fail("the Chia schema has the Optional attribute")
    uid = page.locator("#span-list > li").first.get_attribute("data-uid")
    page.locator(f"#span-list > li[data-uid='{uid}']").click()
    select = page.locator("#detail-attributes select").first
    select.select_option(index=1)
    settle(page)
    assert selected_uid(page) == uid
    expect(page.locator(f"#span-list > li[data-uid='{uid}']")).to_have_attribute("aria-selected", "true")


def test_submit_says_what_becomes_of_undecided_prelabels(dense, demo_db):
    page, world, _ = dense
    page.get_by_test_id("submit").click()
    dialog = page.get_by_test_id("submit-dialog")
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("submit-text")).to_contain_text(
        "54 pre-labels and 28 pre-labelled relations are still undecided"
    )
    shot(page, "dense-submit-dialog")
    page.get_by_test_id("submit-first").click()
    first = page.locator("#span-list > li").first.get_attribute("data-uid")
    assert selected_uid(page) == first
    page.get_by_test_id("submit").click()
    page.get_by_test_id("submit-reject").click()
    settle(page)
    expect(page.get_by_test_id("set-status")).to_have_attribute("data-status", "submitted")
    assert stored_labels(demo_db, world.set_id) == {} and stored_relations(demo_db, world.set_id) == {}
    # A submitted note offers no Submit (this study does not let physicians reopen).
    expect(page.get_by_test_id("submit")).to_be_hidden()
    expect(page.get_by_test_id("skip")).to_be_hidden()
    expect(page.get_by_test_id("reopen")).to_have_count(0)


def test_reopen_replaces_submit_where_the_study_allows_it(dense, demo_db):
    page, _, make = dense
    world = make({"physicians_may_reopen": True})
    page.context.clear_cookies()
    log_in(page, world.username, PASSWORD)
    open_editor(page, world.set_id)
    page.get_by_test_id("submit").click()
    page.get_by_test_id("submit-accept").click()
    settle(page)
    expect(page.get_by_test_id("submit")).to_be_hidden()
    expect(page.get_by_test_id("reopen")).to_be_visible()
    assert {status for _, status in stored_labels(demo_db, world.set_id).values()} == {"confirmed"}
    page.get_by_test_id("reopen").click()
    settle(page)
    expect(page.get_by_test_id("set-status")).to_have_attribute("data-status", "open")
    expect(page.get_by_test_id("submit")).to_be_visible()


def test_skip_asks_for_its_reason_in_the_page(dense, demo_db):
    page, world, _ = dense
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.get_by_test_id("skip").click()
    expect(page.get_by_test_id("skip-dialog")).to_be_visible()
    page.get_by_test_id("skip-confirm").click()  # no reason: refused in the page
    expect(page.locator("#skip-problem")).to_be_visible()
    page.get_by_test_id("skip-reason").fill("Not a clinical note: a trial's criteria list")
    page.get_by_test_id("skip-confirm").click()
    settle(page)
    expect(page.get_by_test_id("set-status")).to_have_attribute("data-status", "skipped")
    assert dialogs == []  # no native prompt() or confirm()


def test_another_tab_learns_of_a_change_within_seconds(dense, demo_db):
    page, world, _ = dense
    other = page.context.new_page()
    other.goto(f"/annotate/sets/{world.set_id}")
    other.wait_for_function("() => document.body.dataset.editorReady === 'true'")
    uid = page.locator("#span-list > li").first.get_attribute("data-uid")
    page.locator(f"#span-list > li[data-uid='{uid}']").click()
    page.keyboard.press("Delete")  # reject it in the first tab
    settle(page)
    expect(other.locator(f"#span-list > li[data-uid='{uid}']")).to_have_count(0, timeout=8000)
    expect(other.locator("[data-testid=span-tag]")).to_have_count(53)
    # A queued edit in the refreshed tab still goes through.
    second = other.locator("#span-list > li").first.get_attribute("data-uid")
    other.locator(f"#span-list > li[data-uid='{second}']").click()
    other.keyboard.press("Enter")
    other.wait_for_function("() => window.clinannEditor.pending() === 0")
    assert stored_labels(demo_db, world.set_id)[second][1] == "confirmed"
    other.close()


def test_confidence_is_shown_sortable_and_usable_in_accept_all(dense, demo_db):
    page, world, _ = dense
    confidences = page.locator("#span-list > li").evaluate_all(
        "els => els.map(e => Number(e.dataset.confidence))"
    )
    assert len(confidences) == 54 and min(confidences) < 0.5
    expect(page.locator(".tag.doubtful")).to_have_count(sum(1 for c in confidences if c < 0.5))
    page.get_by_test_id("span-order").select_option("confidence")
    ordered = page.locator("#span-list > li").evaluate_all(
        "els => els.map(e => Number(e.dataset.confidence))"
    )
    assert ordered == sorted(confidences)
    page.get_by_test_id("accept-all").click()
    page.get_by_test_id("accept-threshold").fill("0.6")
    sure = sum(1 for c in confidences if c >= 0.6)
    expect(page.get_by_test_id("accept-all-count")).to_contain_text(f"{sure} pre-labels")
    page.get_by_test_id("accept-all-confirm").click()
    settle(page)
    stored = stored_labels(demo_db, world.set_id)
    assert sum(1 for _, status in stored.values() if status == "confirmed") == sure
