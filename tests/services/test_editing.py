"""Editing a set: validated, one transaction with its event, idempotent, versioned, replayable."""

import hashlib
import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.db.models import AnnotationSet, Document, EditEvent, Span
from app.db.pipeline import StatementBatch
from app.domain.editing import EditRefused, SpanState
from app.domain.vocabulary import Condition
from app.services import editing
from app.services.annotation_sets import assign
from tests.services.editing_fixtures import ASPIRIN, METFORMIN, NOTE, build_world

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
_ids = itertools.count(1)


@pytest.fixture
def world(sessions, password_hashes):
    return build_world(sessions, password_hashes["annotator"])


def edit(sessions, world, condition, kind, version=None, **fields):
    set_id = world.sets[condition]
    if version is None:
        with sessions() as db:
            version = db.get(AnnotationSet, set_id).version
    request = editing.EditRequest(
        kind=kind,
        client_id=fields.pop("client_id", f"c{next(_ids)}"),
        page_session="page-1",
        version=version,
        monotonic_ms=float(next(_ids)),
        **fields,
    )
    return editing.apply_edit(sessions, world.annotator_id, set_id, request, now=NOW)


def events(sessions, set_id):
    with sessions() as db:
        return list(
            db.scalars(select(EditEvent).where(EditEvent.annotation_set_id == set_id).order_by(EditEvent.id))
        )


def spans(sessions, set_id):
    return editing.stored_state(sessions, set_id).spans


def test_add_stores_code_point_offsets_and_its_event(sessions, world):
    emoji = NOTE.index("😀")
    outcome = edit(sessions, world, "scratch", "add", uid="u1", label="Drug", fragments=((emoji, emoji + 1),))
    assert outcome.version == 1 and outcome.touched == ("u1",)
    stored = spans(sessions, world.sets["scratch"])
    assert stored == {"u1": SpanState("Drug", ((emoji, emoji + 1),), "confirmed")}
    assert NOTE[emoji : emoji + 1] == "😀"
    [event] = events(sessions, world.sets["scratch"])
    assert (event.kind, event.set_version, event.before, event.after["spans"]["u1"]["label"]) == (
        "add",
        1,
        {"spans": {"u1": None}},
        "Drug",
    )


def test_the_same_client_id_is_applied_once(sessions, world):
    edit(
        sessions,
        world,
        "scratch",
        "add",
        version=0,
        client_id="same",
        uid="u1",
        label="Drug",
        fragments=((METFORMIN, METFORMIN + 9),),
    )
    again = edit(
        sessions,
        world,
        "scratch",
        "add",
        version=0,
        client_id="same",
        uid="u1",
        label="Drug",
        fragments=((METFORMIN, METFORMIN + 9),),
    )
    assert again.duplicate and again.version == 1
    assert len(events(sessions, world.sets["scratch"])) == 1


def test_a_stale_version_is_a_conflict_and_changes_nothing(sessions, world):
    edit(sessions, world, "scratch", "add", uid="u1", label="Drug", fragments=((METFORMIN, METFORMIN + 9),))
    with pytest.raises(editing.VersionConflict) as conflict:
        edit(
            sessions,
            world,
            "scratch",
            "add",
            version=0,
            uid="u2",
            label="Drug",
            fragments=((ASPIRIN, ASPIRIN + 7),),
        )
    assert conflict.value.current_version == 1
    assert set(spans(sessions, world.sets["scratch"])) == {"u1"}


BAD_EDITS = [
    ("add", {"uid": "u1", "label": "Drug", "fragments": ((0, len(NOTE) + 1),)}, "fragments[0]"),
    ("add", {"uid": "u1", "label": "Drug", "fragments": ((5, 5),)}, "fragments[0]"),
    ("add", {"uid": "u1", "label": "Drug", "fragments": ((-1, 4),)}, "fragments[0]"),
    ("add", {"uid": "u1", "label": "Drug", "fragments": ((1, 9), (5, 12))}, "overlap"),
    ("add", {"uid": "u1", "label": "Medication", "fragments": ((1, 4),)}, "label: 'Medication'"),
    ("add", {"label": "Drug", "fragments": ((1, 4),)}, "uid"),
    ("delete", {"uid": "nope"}, "that span is no longer in the note"),
    ("skip", {"text": "  "}, "say why"),
    ("teleport", {}, "kind"),
]


@pytest.mark.parametrize("kind,fields,words", BAD_EDITS, ids=[f"{k}-{w}" for k, _, w in BAD_EDITS])
def test_bad_edits_are_refused_naming_the_field_and_store_nothing(sessions, world, kind, fields, words):
    with pytest.raises(EditRefused, match=words.replace("[", r"\[")):
        edit(sessions, world, "scratch", kind, **fields)
    assert spans(sessions, world.sets["scratch"]) == {}
    assert events(sessions, world.sets["scratch"]) == []
    with sessions() as db:
        assert db.get(AnnotationSet, world.sets["scratch"]).version == 0


def test_another_physicians_set_is_not_yours(sessions, world):
    request = editing.EditRequest(
        kind="add", client_id="x", page_session="p", version=0, uid="u", label="Drug", fragments=((1, 3),)
    )
    with pytest.raises(editing.NotYourNote):
        editing.apply_edit(sessions, world.other_annotator_id, world.sets["scratch"], request, now=NOW)
    with pytest.raises(editing.NotYourNote):  # a pre-annotation set is nobody's to edit
        editing.apply_edit(sessions, world.annotator_id, world.pre_set_id, request, now=NOW)


def test_refining_pre_labels_accept_reject_relabel_modify_accept_all(sessions, world):
    set_id = world.sets["refine_llm"]
    start = spans(sessions, set_id)
    assert {s.status for s in start.values()} == {"pending"}
    drug, strength, aspirin = sorted(start, key=lambda u: start[u].fragments)
    edit(sessions, world, "refine_llm", "accept", uid=drug)
    edit(sessions, world, "refine_llm", "relabel", uid=strength, label="Dosage")
    edit(sessions, world, "refine_llm", "modify", uid=strength, fragments=((METFORMIN + 10, METFORMIN + 13),))
    edit(sessions, world, "refine_llm", "reject", uid=aspirin)
    with pytest.raises(EditRefused, match="not an undecided pre-label"):
        edit(sessions, world, "refine_llm", "reject", uid=drug)
    now = spans(sessions, set_id)
    assert now[drug].status == "confirmed"
    assert now[strength] == SpanState(
        "Dosage", ((METFORMIN + 10, METFORMIN + 13),), "confirmed", confidence=0.8
    )
    assert aspirin not in now
    with sessions() as db:  # every copy remembers the pre-label it came from
        base_ids = set(db.scalars(select(Span.base_span_id).where(Span.annotation_set_id == set_id)))
        assert None not in base_ids


def test_accept_all_accepts_only_what_was_shown(sessions, world):
    set_id = world.sets["refine_llm"]
    uids = sorted(spans(sessions, set_id))
    edit(sessions, world, "refine_llm", "accept_all", uids=tuple(uids[:2]))
    assert sorted(u for u, s in spans(sessions, set_id).items() if s.status == "pending") == uids[2:]


def test_undo_and_redo_are_edit_events_too(sessions, world):
    set_id = world.sets["scratch"]
    edit(
        sessions,
        world,
        "scratch",
        "add",
        client_id="add-1",
        uid="u1",
        label="Drug",
        fragments=((METFORMIN, METFORMIN + 9),),
    )
    edit(sessions, world, "scratch", "undo", client_id="undo-1", target="add-1")
    assert spans(sessions, set_id) == {}
    edit(sessions, world, "scratch", "redo", client_id="redo-1", target="undo-1")
    assert set(spans(sessions, set_id)) == {"u1"}
    edit(sessions, world, "scratch", "relabel", uid="u1", label="Reason")
    with pytest.raises(EditRefused, match="changed since"):  # undoing the add now would lose the relabel
        edit(sessions, world, "scratch", "undo", target="add-1")
    assert [e.kind for e in events(sessions, set_id)] == ["add", "undo", "redo", "relabel"]


def test_submit_can_require_every_pre_label_decided(sessions, password_hashes):
    world = build_world(sessions, password_hashes["annotator"], {"require_prelabels_decided": True})
    with pytest.raises(EditRefused, match="3 pre-labels are undecided"):
        edit(sessions, world, "refine_llm", "submit")
    edit(sessions, world, "refine_llm", "accept_all")
    edit(sessions, world, "refine_llm", "submit")
    with sessions() as db:
        assert db.get(AnnotationSet, world.sets["refine_llm"]).status == "submitted"
    with pytest.raises(EditRefused, match="submitted"):
        edit(sessions, world, "refine_llm", "add", uid="late", label="Drug", fragments=((1, 3),))


def test_time_events_are_stored_once_and_checked(sessions, world):
    set_id = world.sets["scratch"]
    batch = [editing.TimeEventIn("open", "t1", 0.0), editing.TimeEventIn("activity", "t2", 4000.0)]
    assert editing.record_time_events(sessions, world.annotator_id, set_id, "page-1", batch) == 2
    assert editing.record_time_events(sessions, world.annotator_id, set_id, "page-1", batch) == 0
    with pytest.raises(EditRefused, match=r"events\[0\].kind"):
        editing.record_time_events(
            sessions, world.annotator_id, set_id, "page-1", [editing.TimeEventIn("add", "t3", 1.0)]
        )
    assert [e.kind for e in events(sessions, set_id)] == ["open", "activity"]
    [session] = editing.set_times(sessions, set_id, 60)
    assert session.active_seconds == 4.0


# --- replay: the stored set is always its base plus its events ------------------------------------


def _fresh_refine_set(sessions, world) -> int:
    """A new note whose set copies the pre-labels, so each example starts clean."""
    with sessions.begin() as db:
        n = next(_ids)
        document = Document(
            project_id=world.project_id,
            external_id=f"replay-{n}",
            text=NOTE,
            sha256=hashlib.sha256(NOTE.encode()).hexdigest(),
        )
        db.add(document)
        db.flush()
        pre = db.get(AnnotationSet, world.pre_set_id)
        copy = AnnotationSet(
            document_id=document.id,
            origin="pre_annotation",
            pre_annotation_run_id=pre.pre_annotation_run_id,
            status="submitted",
        )
        db.add(copy)
        db.flush()
        from app.domain.vocabulary import SpanStatus
        from app.services.annotation_sets import copy_set_contents

        copy_set_contents(db, pre, copy, SpanStatus.pending)
        assignment = assign(
            db,
            project_id=world.project_id,
            document_id=document.id,
            annotator_id=world.annotator_id,
            condition=Condition.refine_llm,
            queue_position=1000 + n,
            base_set=copy,
        )
        return assignment.annotation_set_id


LABELS = ["Drug", "Strength", "Dosage", "Reason", "Bogus"]
offsets = st.integers(min_value=-2, max_value=len(NOTE) + 2)
operation = st.one_of(
    st.tuples(st.just("add"), offsets, offsets, st.sampled_from(LABELS)),
    st.tuples(st.sampled_from(["delete", "reject", "accept"]), st.integers(0, 9)),
    st.tuples(st.just("relabel"), st.integers(0, 9), st.sampled_from(LABELS)),
    st.tuples(st.just("modify"), st.integers(0, 9), offsets, offsets),
    st.tuples(st.sampled_from(["undo", "redo"]), st.integers(0, 9)),
    st.tuples(st.just("accept_all")),
    st.tuples(st.just("stale"), offsets),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operation, min_size=1, max_size=25))
def test_stored_set_equals_base_plus_events_replayed(sessions, world, operations):
    set_id = _fresh_refine_set(sessions, world)
    done, undone = [], []
    for op in operations:
        state = editing.stored_state(sessions, set_id)
        uids = sorted(state.spans)
        with sessions() as db:
            version = db.get(AnnotationSet, set_id).version
        client_id = f"h{next(_ids)}"
        fields: dict = {}
        kind = op[0]
        if kind == "add":
            fields = {"uid": f"n{next(_ids)}", "label": op[3], "fragments": ((op[1], op[2]),)}
        elif kind in ("delete", "reject", "accept", "relabel", "modify"):
            fields["uid"] = uids[op[1] % len(uids)] if uids else "missing"
            if kind == "relabel":
                fields["label"] = op[2]
            if kind == "modify":
                fields["fragments"] = ((op[2], op[3]),)
        elif kind == "undo":
            fields["target"] = done[-1 - op[1] % len(done)] if done else "none"
        elif kind == "redo":
            fields["target"] = undone[-1] if undone else "none"
        elif kind == "stale":
            kind, version = "add", version - 1
            fields = {"uid": f"s{next(_ids)}", "label": "Drug", "fragments": ((op[1], op[1] + 1),)}
        request = editing.EditRequest(
            kind=kind,
            client_id=client_id,
            page_session="hyp",
            version=version,
            monotonic_ms=float(next(_ids)),
            **fields,
        )
        try:
            editing.apply_edit(sessions, world.annotator_id, set_id, request, now=NOW)
        except (EditRefused, editing.VersionConflict):
            continue
        (undone if kind == "undo" else done).append(client_id)
    assert editing.stored_state(sessions, set_id) == editing.replayed_state(sessions, set_id)
    with sessions() as db:
        annotation_set = db.get(AnnotationSet, set_id)
        logged = db.scalar(
            select(func.count()).select_from(EditEvent).where(EditEvent.annotation_set_id == set_id)
        )
    assert annotation_set.version == logged  # every applied edit is one event and one version


def test_undoing_a_reject_restores_the_pre_label_with_its_origin_and_confidence(sessions, world):
    set_id = world.sets["refine_llm"]
    with sessions() as db:
        before = {
            s.uid: (s.base_span_id, s.confidence)
            for s in db.scalars(select(Span).where(Span.annotation_set_id == set_id))
        }
    uid = sorted(before)[0]
    edit(sessions, world, "refine_llm", "reject", client_id="rej", uid=uid)
    edit(sessions, world, "refine_llm", "undo", target="rej")
    with sessions() as db:
        restored = db.scalar(select(Span).where(Span.annotation_set_id == set_id, Span.uid == uid))
    assert (restored.base_span_id, restored.confidence) == before[uid] and restored.status == "pending"


def test_an_edit_made_elsewhere_is_seen_by_the_next_edit_here(sessions, world):
    """This process keeps the last state it committed per set; another process's edit (another
    worker of a multi-process server) moves the version on, so the kept state is not used."""
    from app.db.models import SpanFragment

    set_id = world.sets["scratch"]
    edit(sessions, world, "scratch", "add", uid="u1", label="Drug", fragments=((0, 3),))
    with sessions.begin() as db:  # what another process's committed edit leaves behind
        span = db.scalar(select(Span).where(Span.annotation_set_id == set_id, Span.uid == "u1"))
        span.label = "Strength"
        db.add(
            Span(
                annotation_set_id=set_id,
                uid="u2",
                label="Drug",
                fragments=[SpanFragment(ordinal=0, start=4, end=8)],
            )
        )
        db.get(AnnotationSet, set_id).version += 1
    outcome = edit(sessions, world, "scratch", "relabel", uid="u2", label="Strength")
    assert outcome.state.spans["u1"].label == "Strength"  # the other process's change, not the kept state
    assert set(outcome.state.spans) == {"u1", "u2"}
    assert editing.stored_state(sessions, set_id).spans == outcome.state.spans
    # and a kept state from a commit that failed is never used: nothing is kept before the commit
    with pytest.raises(editing.VersionConflict):
        edit(sessions, world, "scratch", "delete", version=outcome.version - 1, uid="u1")
    again = edit(sessions, world, "scratch", "delete", uid="u1")
    assert set(again.state.spans) == {"u2"} == set(editing.stored_state(sessions, set_id).spans)


def test_only_the_fields_an_edit_changes_go_into_the_update_of_the_set():
    # The column names are written into the statement: nothing else may get there.
    batch = StatementBatch()
    with pytest.raises(ValueError, match="document_id"):
        editing.queue_set_update(batch, AnnotationSet(id=1, version=0), {"version": 1, "document_id": 2})
    assert not batch
