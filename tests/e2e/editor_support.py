"""Helpers for the span-editor e2e tests: a private world in the demo server's database, and
small browser helpers (select text with the mouse, wait until every edit is saved, read the list).

Every test builds its own users, project and notes (names suffixed with a random tag) in the
database of the shared `clinann demo` server, and deletes them afterwards, so editing tests can
neither see each other's data nor change what the demo logins see.
"""

import hashlib
import re
import time
import uuid
from dataclasses import dataclass, field

from sqlalchemy import delete, make_url, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import AnnotationSet, Document, EditEvent, PreAnnotationRun, Project, User
from app.demo.seed import DEMO_PROJECT, MEDICATION_SCHEMA
from app.domain.spans import Fragment, SpanData
from app.domain.vocabulary import Condition, SetOrigin, SetStatus, SpanStatus
from app.services.annotation_sets import add_spans, assign
from app.services.editing import TIME_KINDS, stored_state

# tests/e2e/conftest.py: `demo_server` runs on postgres.create_database("clinann_e2e").
E2E_DATABASE = "clinann_e2e"
PASSWORD = "editor-e2e-password"

# An emoji outside the BMP (two UTF-16 units, one code point) and CRLF line endings.
NOTE = "Pt 😀 given Metformin 500 mg PO BID.\r\nThen aspirin 81 mg daily.\r\n"
BOM_NOTE = "\ufeff" + NOTE


def e2e_database_url(postgres) -> str:
    """The SQLAlchemy URL of the demo server's database (without dropping it, as create_database would)."""
    url = make_url(postgres.admin_url.replace("postgresql://", "postgresql+psycopg://", 1))
    return url.set(database=E2E_DATABASE).render_as_string(hide_password=False)


def check_is_demo_database(sessions: sessionmaker[Session]) -> None:
    with sessions() as db:
        found = db.scalar(select(Project.id).where(Project.name == DEMO_PROJECT))
    assert found is not None, f"{E2E_DATABASE} is not the database of the demo server"


def cp_range(text: str, word: str, occurrence: int = 0) -> tuple[int, int]:
    """Code-point [start, end) of the n-th occurrence of ``word`` in ``text``."""
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(word, start + 1)
    return start, start + len(word)


@dataclass
class EditorWorld:
    """One annotator (ours) and another one, on three notes with the same text.

    - note S: our scratch set; the other annotator refines LLM pre-labels (``secret_uids``) on it;
    - note R: our refine_llm set, started from pre-labels with uids ``prelabel_uids``;
    - note O: the other annotator's scratch set (not ours).
    """

    tag: str
    text: str
    username: str
    password: str
    user_id: int
    other_id: int
    project_id: int
    scratch_set: int
    refine_set: int
    other_scratch_set: int
    other_refine_set: int
    pre_set_ids: list[int]
    prelabel_uids: dict[str, str] = field(default_factory=dict)  # name -> uid
    secret_uids: list[str] = field(default_factory=list)


def _pre_set(
    db: Session, document: Document, run: PreAnnotationRun, spans: dict[str, SpanData]
) -> AnnotationSet:
    pre = AnnotationSet(
        document_id=document.id,
        origin=SetOrigin.pre_annotation.value,
        pre_annotation_run_id=run.id,
        status=SetStatus.submitted.value,
    )
    db.add(pre)
    db.flush()
    rows = add_spans(db, pre, list(spans.values()), status=SpanStatus.pending)
    for row, uid in zip(rows, spans, strict=True):
        row.uid = uid
    db.flush()
    return pre


def build_world(sessions: sessionmaker[Session], password_hash: str, text: str = NOTE) -> EditorWorld:
    tag = uuid.uuid4().hex[:10]
    with sessions.begin() as db:
        me = User(
            username=f"ed-{tag}",
            display_name=f"Dr Editor {tag}",
            role="annotator",
            password_hash=password_hash,
        )
        other = User(
            username=f"eo-{tag}",
            display_name=f"Dr Other {tag}",
            role="annotator",
            password_hash=password_hash,
        )
        project = Project(name=f"Editor e2e {tag}", label_schema=MEDICATION_SCHEMA, study_settings={})
        db.add_all([me, other, project])
        db.flush()
        run = PreAnnotationRun(
            project_id=project.id, name=f"llm {tag}", method="imported", status="succeeded"
        )
        db.add(run)
        documents = {}
        for key in "SRO":
            documents[key] = Document(
                project_id=project.id,
                external_id=f"editor-{tag}-{key}",
                text=text,
                sha256=hashlib.sha256(text.encode()).hexdigest(),
            )
            db.add(documents[key])
        db.flush()

        def span(label: str, word: str, confidence: float) -> SpanData:
            start, end = cp_range(text, word)
            return SpanData(label, (Fragment(start, end),), confidence=confidence)

        prelabels = {
            f"pre-{tag}-drug": span("Drug", "Metformin", 0.9),
            f"pre-{tag}-strength": span("Strength", "500 mg", 0.8),
            f"pre-{tag}-route": span("Route", "PO", 0.7),
            f"pre-{tag}-aspirin": span("Drug", "aspirin", 0.6),
        }
        secrets = {
            f"secret-{tag}-ade": span("ADE", "BID", 0.51),
            f"secret-{tag}-reason": span("Reason", "daily", 0.52),
        }
        pre_r = _pre_set(db, documents["R"], run, prelabels)
        pre_s = _pre_set(db, documents["S"], run, secrets)

        def queue(user: User, key: str, condition: Condition, position: int, base=None) -> int:
            assignment = assign(
                db,
                project_id=project.id,
                document_id=documents[key].id,
                annotator_id=user.id,
                condition=condition,
                queue_position=position,
                base_set=base,
            )
            return assignment.annotation_set_id

        world = EditorWorld(
            tag=tag,
            text=text,
            username=me.username,
            password=PASSWORD,
            user_id=me.id,
            other_id=other.id,
            project_id=project.id,
            scratch_set=queue(me, "S", Condition.scratch, 0),
            refine_set=queue(me, "R", Condition.refine_llm, 1, pre_r),
            other_refine_set=queue(other, "S", Condition.refine_llm, 0, pre_s),
            other_scratch_set=queue(other, "O", Condition.scratch, 1),
            pre_set_ids=[pre_r.id, pre_s.id],
            prelabel_uids={uid.rsplit("-", 1)[1]: uid for uid in prelabels},
            secret_uids=list(secrets),
        )
    return world


def drop_world(sessions: sessionmaker[Session], world: EditorWorld) -> None:
    """Delete everything the world made (sets with a base first: base_set_id is RESTRICT)."""
    with sessions.begin() as db:
        documents = select(Document.id).where(Document.project_id == world.project_id)
        db.execute(
            delete(AnnotationSet).where(
                AnnotationSet.document_id.in_(documents), AnnotationSet.base_set_id.is_not(None)
            )
        )
        db.execute(delete(Project).where(Project.id == world.project_id))
        db.execute(delete(User).where(User.id.in_([world.user_id, world.other_id])))


# ---- the stored side ---------------------------------------------------------------------------


def stored_spans(sessions, set_id: int) -> dict[str, tuple[str, list[list[int]], str]]:
    """uid -> (label, code-point fragments, status) of the spans stored in PostgreSQL."""
    spans = stored_state(sessions, set_id).spans
    return {uid: (s.label, [list(f) for f in s.fragments], s.status) for uid, s in spans.items()}


def stored_status(sessions, set_id: int) -> str:
    return stored_state(sessions, set_id).status


def edit_log(sessions, page_session: str) -> list[EditEvent]:
    """The edits (not time events) a page session stored, in order."""
    with sessions() as db:
        return list(
            db.scalars(
                select(EditEvent)
                .where(
                    EditEvent.page_session_id == page_session,
                    EditEvent.kind.not_in([k.value for k in TIME_KINDS]),
                )
                .order_by(EditEvent.id)
            )
        )


def time_kinds(sessions, page_session: str) -> list[str]:
    with sessions() as db:
        return list(
            db.scalars(
                select(EditEvent.kind)
                .where(
                    EditEvent.page_session_id == page_session,
                    EditEvent.kind.in_([k.value for k in TIME_KINDS]),
                )
                .order_by(EditEvent.id)
            )
        )


def wait_for(condition, timeout: float = 10.0, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.05)


# ---- the browser side --------------------------------------------------------------------------


def open_next_note(page, sessions, login: str, password: str, words: int) -> tuple[int, list]:
    """Log in as a demo physician and open their next note; its set id, and the offsets of its first
    ``words`` words of five letters or more (places to label)."""
    from e2e_support import log_in

    log_in(page, login, password)
    page.goto("/annotate/next")
    page.wait_for_function("() => document.body.dataset.editorReady === 'true'")
    set_id = int(page.url.rsplit("/", 1)[1])
    with sessions() as db:
        text = db.scalar(select(Document.text).join(AnnotationSet).where(AnnotationSet.id == set_id))
    return set_id, [m.span() for m in re.finditer(r"[A-Za-z]{5,}", text)][:words]


def open_editor(page, set_id: int):
    response = page.goto(f"/annotate/sets/{set_id}")
    assert response is not None and response.ok, f"set {set_id}: HTTP {response and response.status}"
    page.wait_for_function("() => document.body.dataset.editorReady === 'true'")
    return response


def settle(page) -> None:
    """Wait until the editor has no queued or in-flight edit."""
    page.wait_for_function("() => window.clinannEditor && window.clinannEditor.pending() === 0")


def page_session(page) -> str:
    return page.evaluate("() => window.clinannEditor.pageSession")


def dom_spans(page) -> dict[str, tuple[str, list[list[int]], str]]:
    """uid -> (label, fragments, status) of the side list's items."""
    items = page.eval_on_selector_all(
        "#span-list > li[data-testid=span-item]",
        """items => items.map(li => [li.dataset.uid, li.dataset.label,
                                    JSON.parse(li.dataset.fragments), li.dataset.status])""",
    )
    spans = {uid: (label, fragments, status) for uid, label, fragments, status in items}
    assert len(spans) == len(items), f"a uid is listed twice: {items}"
    return spans


def dom_list(page) -> list[tuple[str, str, str, str]]:
    """(uid, label, fragments JSON, status) of every item, in list order."""
    return [
        tuple(row)
        for row in page.eval_on_selector_all(
            "#span-list > li[data-testid=span-item]",
            """items => items.map(li => [li.dataset.uid, li.dataset.label,
                                        li.dataset.fragments, li.dataset.status])""",
        )
    ]


def selection(page) -> str | None:
    return page.get_attribute("#note-text", "data-selection")


def selected_uid(page) -> str | None:
    return page.evaluate(
        """() => { const li = document.querySelector('#span-list > li[aria-selected=true]');
                   return li ? li.dataset.uid : null; }"""
    )


def char_rect(page, start: int, end: int) -> dict[str, float]:
    """Viewport rectangle of the text between code points start and end (on one line)."""
    return page.evaluate(
        """([s, e]) => {
            const ed = window.clinannEditor;
            const node = document.getElementById('note-text').firstChild;
            const range = document.createRange();
            range.setStart(node, ed.cpToU16(s));
            range.setEnd(node, ed.cpToU16(e));
            const rects = [...range.getClientRects()].filter((r) => r.width > 0.5);
            if (rects.length !== 1) throw new Error(`${rects.length} rectangles for ${s}-${e}`);
            const r = rects[0];
            return { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
        }""",
        [start, end],
    )


def mouse_select(page, start: int, end: int) -> None:
    """Drag the mouse from code point ``start`` to code point ``end`` (both on one line)."""
    first = char_rect(page, start, start + 1)
    last = char_rect(page, end - 1, end)
    y = (first["top"] + first["bottom"]) / 2
    page.mouse.move(first["left"] + 1, y)
    page.mouse.down()
    page.mouse.move((first["left"] + last["right"]) / 2, y, steps=3)
    page.mouse.move(last["right"] - 1, y, steps=3)
    page.mouse.up()


def csrf_token(page) -> str:
    import json

    return json.loads(page.get_attribute("body", "hx-headers"))["X-CSRF-Token"]


def label(page, start: int, end: int) -> None:
    """Select a word with the mouse (again, if the drag did not take) and label it Drug."""
    for _ in range(5):
        mouse_select(page, start, end)
        if page.evaluate("() => document.getElementById('note-text').dataset.selection") == f"{start}-{end}":
            page.keyboard.press("d")
            return
        page.keyboard.press("Escape")
    raise AssertionError(f"could not select {start}-{end}")


def assert_added_once_in_order(sessions, set_id: int, words) -> None:
    """Each word was added exactly once (one add event per client id, none lost), in the order the
    physician labelled them, and the stored set equals its replay."""
    from app.services.editing import replayed_state

    with sessions() as db:
        adds = db.execute(
            select(EditEvent.client_id, EditEvent.after)
            .where(EditEvent.annotation_set_id == set_id, EditEvent.kind == "add")
            .order_by(EditEvent.id)
        ).all()
    client_ids = [client_id for client_id, _ in adds]
    assert len(client_ids) == len(set(client_ids)) == len(words)  # each edit once, none lost
    added = [next(iter(after["spans"].values()))["fragments"][0] for _, after in adds]
    assert added == [list(w) for w in words]  # in the order they were made
    assert replayed_state(sessions, set_id) == stored_state(sessions, set_id)
