"""A finished study in the demo, done by simulated physicians, so a newcomer sees what clinann measures.

Three simulated physicians (and a simulated lead) work ten of the demo's notes the way a study runs:
two calibration notes that all three refine from the LLM's pre-labels, then eight notes each done from
scratch by one physician, refined by a second (refine_human) and refined from the pre-labels by the
third (refine_llm), rotated so that everyone works in every condition. The lead adjudicates one
calibration note into gold, and a term-list pre-annotation run covers every note.

Nothing here writes a figure. Each simulated physician works like the editor's user: every edit is
planned and applied by the editor's own rules (app.domain.editing.plan, as apply_edit does) and logged
as the edit event the editor logs, between the page's open, activity, hidden, visible and close events
as the browser sends them, stamped with a fake clock whose minutes per note follow the published study
(refine_llm clearly faster than scratch). Each set is then stored as its log leaves it, with the
editor's write path (app.services.editing.write_change), and its log beside it: one transaction for
the whole study, not one per edit, so that `clinann demo` still starts in seconds. Gold is started by
the adjudication service, and the term-list run goes through the pre-annotation services. The
dashboard computes its figures from those rows, as it does for real work. Seeded random generators
make the study the same on every machine.

The simulated accounts say "(simulated)" in their names and user names, have no password and are
disabled: nobody logs in as them, and a lead designing a study is not offered them. The notes left
for the demo's own physicians (dr.adams, dr.baker, dr.chen) keep their queues exactly as before.
"""

import hashlib
import math
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, null, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    AnnotationSet,
    Assignment,
    Document,
    EditEvent,
    PreAnnotationRun,
    Project,
    Study,
    User,
)
from app.db.pipeline import StatementBatch
from app.domain.editing import Change, EditRefused, SetState, SpanState, apply_change
from app.domain.label_schema import LabelSchema, StudySettings
from app.domain.spans import SpanData
from app.domain.study_time import PUBLISHED_REFERENCE
from app.domain.vocabulary import Condition, EditKind, Role, SetOrigin, SpanStatus, StudyStatus
from app.services import adjudication, audit, editing
from app.services.annotation_sets import check_base

SEED = 2018
STUDY_NAME = "Finished study (simulated)"
RUN_NAME = "Term list (simulated study)"
# Not a password hash: argon2 cannot read it, so no password matches (the accounts are disabled too).
NO_PASSWORD = "!simulated account: no password"


@dataclass(frozen=True)
class SimulatedPhysician:
    username: str
    display_name: str
    speed: float  # factor on the minutes a note takes
    slips: float  # factor on the chance of each kind of mistake


PHYSICIANS = (
    SimulatedPhysician("dr.ito-simulated", "Dr. Ito (simulated)", 0.93, 0.8),
    SimulatedPhysician("dr.jensen-simulated", "Dr. Jensen (simulated)", 1.0, 1.0),
    SimulatedPhysician("dr.kowalski-simulated", "Dr. Kowalski (simulated)", 1.08, 1.3),
)
LEAD = ("dr.laurent-simulated", "Dr. Laurent (simulated lead)")
SIMULATED_ACCOUNTS = {p.username: p.display_name for p in PHYSICIANS} | {LEAD[0]: LEAD[1]}
# What `clinann demo` prints about it.
SIMULATED_NOTICE = [
    "The demo project also holds a finished study that is SIMULATED:",
    f"  {', '.join(p.display_name for p in PHYSICIANS)} and {LEAD[1]}",
    "  are made-up, disabled accounts. Their edits and working time on ten of the notes were generated so",
    "  that the dashboard has figures to show; clinann computes them from those recorded events as it would",
    "  from real work. The notes in the queues of the logins above are left for you.",
]

# The notes of the study (the demo's last ten): everyone refines the calibration notes first.
CALIBRATION_NOTES = ("discharge-13", "discharge-14")
STUDY_NOTES = tuple(f"discharge-{n}" for n in range(15, 23))
ADJUDICATED_NOTE = "discharge-13"
# Mean minutes per note of the published study, the centre of the simulated times.
MEAN_MINUTES = {c: PUBLISHED_REFERENCE["minutes"][c]["mean"] for c in Condition}
CALIBRATION_FACTOR = 1.2  # the first notes of a study take longer
ADJUDICATION_MINUTES = 7.0
# The lead keeps a few physicians' relations and draws the others again: each keep reads every
# physician's set, which the seeding (run at each first start) should not do dozens of times.
RELATIONS_KEPT = 3

# Labels a physician confuses with each other (never Drug: it is the anchor of every relation).
CONFUSED = {
    "Strength": "Dosage",
    "Dosage": "Strength",
    "Reason": "ADE",
    "ADE": "Reason",
    "Form": "Route",
    "Route": "Form",
    "Frequency": "Duration",
    "Duration": "Frequency",
}
# A term list as a team might write one for a first run: common generic names, routes, frequencies and
# forms, nothing for strengths, reasons or side effects (a list cannot find those).
TERM_LIST = {
    "Drug": "acetaminophen albuterol amlodipine amoxicillin apixaban aspirin atorvastatin cefazolin "
    "ceftriaxone clindamycin docusate doxycycline enoxaparin furosemide glipizide heparin ibuprofen "
    "lactulose levothyroxine lisinopril lithium metformin methylprednisolone metoprolol ondansetron "
    "oxycodone pantoprazole prednisone rifaximin senna spironolactone vancomycin warfarin zolpidem",
    "Route": "by mouth|IV|intravenous|intravenously|subcutaneous|subcutaneously|oral|orally|nebulized|"
    "topically|inhaled",
    "Frequency": "daily|twice daily|three times daily|four times daily|nightly|at bedtime|every 6 hours|"
    "every 8 hours|every 12 hours|once",
    "Form": "tablet|tablets|capsule|capsules|inhaler|cream|infusion|patch|solution",
}


def term_list_csv() -> str:
    rows = ["label,term"]
    for label, terms in TERM_LIST.items():
        rows += [f"{label},{term}" for term in (terms.split("|") if "|" in terms else terms.split())]
    return "\n".join(rows) + "\n"


def _rng(*parts: object) -> random.Random:
    """A generator of its own for each piece of the study: the same piece comes out the same."""
    digest = hashlib.sha256(repr((SEED, *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


# ---- the reference a simulated physician aims at: the note's gold ------------------------------------


@dataclass(frozen=True)
class Reference:
    """A note's gold as a physician would get it right: spans by brat id, relations between them."""

    text: str
    spans: dict[str, SpanData]
    relations: list[tuple[str, str, str]]  # type, head id, tail id
    diagnosis: str

    @classmethod
    def of(cls, text: str, spans: dict[str, SpanData], relations) -> "Reference":
        """From the brat gold of a note (its entities, and relations naming them by id)."""
        return cls(text, dict(spans), [(r.type, r.arg1, r.arg2) for r in relations], _diagnosis(text))


def _diagnosis(text: str) -> str:
    """The note's primary discharge diagnosis, as a physician would answer the question."""
    match = re.search(r"DISCHARGE DIAGNOS[IE]S:[ \t]*(?:\r?\n)*[ \t]*(?:\d+\.\s*)?([^\r\n;]+)", text)
    return match.group(1).strip().rstrip(".") if match else ""


def _fragments(span: SpanData) -> tuple[tuple[int, int], ...]:
    return tuple((f.start, f.end) for f in span.fragments)


def _overlap(a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]) -> int:
    return sum(max(0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


WORD = re.compile(r"\w+")


def _shifted(text: str, fragments: tuple[tuple[int, int], ...], rng: random.Random):
    """The span with a boundary off by a word (one more at an end, or one less), or None."""
    (start, end), *rest = fragments
    if rest:
        return None
    words = [m.span() for m in WORD.finditer(text)]
    inside = [w for w in words if w[0] >= start and w[1] <= end]
    options = []
    following = next((w for w in words if w[0] >= end), None)
    if following and following[0] - end <= 2 and "\n" not in text[end : following[0]]:
        options.append(((start, following[1]),))
    preceding = next((w for w in reversed(words) if w[1] <= start), None)
    if preceding and start - preceding[1] <= 2 and "\n" not in text[preceding[1] : start]:
        options.append(((preceding[0], end),))
    if len(inside) >= 2:
        options.append(((start, inside[-2][1]),))
    return rng.choice(options) if options else None


# ---- what a physician does to a note: a script of editor requests ------------------------------------


@dataclass
class Step:
    """One request the editor would send, without its timing and ids."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Script:
    steps: list[Step] = field(default_factory=list)
    counter: int = 0

    def new_uid(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def add(self, kind: str, **fields: Any) -> None:
        self.steps.append(Step(kind, fields))


def _relations(
    script: Script,
    reference: Reference,
    labels: dict[str, str],
    uid_of: dict[str, str],
    rng: random.Random,
    chance: float,
    existing: set[tuple[str, str, str]] = frozenset(),
) -> None:
    """Draw the gold relations between the spans the physician has (with the types their labels allow)."""
    for _, head, tail in reference.relations:
        if head not in uid_of or tail not in uid_of or rng.random() > chance:
            continue
        head_uid, tail_uid = uid_of[head], uid_of[tail]
        head_label, tail_label = labels[head_uid], labels[tail_uid]
        if tail_label != "Drug" or head_label == "Drug":
            continue  # the physician's own labels allow no relation here
        relation_type = f"{head_label}-Drug"
        if (relation_type, head_uid, tail_uid) in existing:
            continue
        script.add(
            EditKind.relation_add, uid=script.new_uid("r"), label=relation_type, head=head_uid, tail=tail_uid
        )


def _certainty(reference: Reference, gold_id: str) -> str:
    """Whether a Reason or ADE is only possible: fixed per span, so physicians mostly agree."""
    span = reference.spans[gold_id]
    digest = hashlib.sha256(f"{span.fragments[0].start}:{span.label}".encode()).digest()
    return "possible" if digest[0] % 5 == 0 else "certain"


def _attributes(
    script: Script,
    reference: Reference,
    labels: dict[str, str],
    uid_of: dict[str, str],
    rng: random.Random,
    slips: float,
) -> None:
    for gold_id, uid in uid_of.items():
        if labels.get(uid) not in ("Reason", "ADE"):
            continue
        possible = _certainty(reference, gold_id) == "possible"
        if (possible and rng.random() < 1 - 0.15 * slips) or (not possible and rng.random() < 0.03 * slips):
            script.add(EditKind.attribute_set, uid=uid, attribute="certainty", value="possible")


def _answers(script: Script, reference: Reference, rng: random.Random) -> None:
    if reference.diagnosis:
        script.add(EditKind.answer, key="primary_diagnosis", value=reference.diagnosis)
    script.add(EditKind.answer, key="confidence", value=rng.choice([3, 4, 4, 4, 5, 5]))


def scratch_script(reference: Reference, physician: SimulatedPhysician, rng: random.Random) -> Script:
    """A physician labels an empty note: most gold right, some missed, mislabelled or off by a word,
    a few slips corrected on the way (relabel, move, undo, delete), then relations and answers."""
    script = Script()
    slips = physician.slips
    labels: dict[str, str] = {}
    uid_of: dict[str, str] = {}
    ordered = sorted(reference.spans.items(), key=lambda item: _fragments(item[1]))
    labelled = bytearray(len(reference.text))  # 1 where a gold span is
    for span in reference.spans.values():
        for start, end in _fragments(span):
            labelled[start:end] = b"\x01" * (end - start)
    words = [m.span() for m in WORD.finditer(reference.text) if len(m.group()) >= 6 and m.group().isalpha()]
    spurious = [(start, end) for start, end in words if not any(labelled[start:end])]
    extra = set(rng.sample(range(len(spurious)), k=min(len(spurious), rng.choice([0, 1, 1, 2]))))
    extra_at = sorted(spurious[i] for i in extra)
    for gold_id, span in ordered:
        fragments = _fragments(span)
        while extra_at and extra_at[0][0] < fragments[0][0]:  # a slip: a word that is not a label
            start, end = extra_at.pop(0)
            uid = script.new_uid("s")
            script.add(
                EditKind.add,
                uid=uid,
                label=rng.choice(["Reason", "Reason", "Drug"]),
                fragments=((start, end),),
            )
            if rng.random() < 0.4:
                script.add(EditKind.delete, uid=uid)  # noticed at once
        roll = rng.random()
        if roll < 0.04 * slips:
            continue  # missed
        uid = script.new_uid("s")
        label = span.label
        if roll < 0.07 * slips and label in CONFUSED:
            label = CONFUSED[label]  # mislabelled, and left so
        elif roll < 0.12 * slips and (shifted := _shifted(reference.text, fragments, rng)):
            fragments = shifted  # off by a word, and left so
        elif roll < 0.16 * slips and label in CONFUSED:
            script.add(EditKind.add, uid=uid, label=CONFUSED[label], fragments=fragments)
            script.add(EditKind.relabel, uid=uid, label=label, broken_relations="retype")
            labels[uid], uid_of[gold_id] = label, uid
            continue
        elif roll < 0.19 * slips and (shifted := _shifted(reference.text, fragments, rng)):
            script.add(EditKind.add, uid=uid, label=label, fragments=shifted)
            script.add(EditKind.modify, uid=uid, fragments=fragments)
            labels[uid], uid_of[gold_id] = label, uid
            continue
        elif roll < 0.21 * slips:
            script.add(EditKind.add, uid=uid, label=label, fragments=fragments)
            script.add(EditKind.undo, target_step=len(script.steps) - 1)
            script.add(EditKind.redo, target_step=len(script.steps) - 1)
            labels[uid], uid_of[gold_id] = label, uid
            continue
        script.add(EditKind.add, uid=uid, label=label, fragments=fragments)
        labels[uid], uid_of[gold_id] = label, uid
    for start, end in extra_at:
        script.add(EditKind.add, uid=script.new_uid("s"), label="Reason", fragments=((start, end),))
    _attributes(script, reference, labels, uid_of, rng, slips)
    _relations(script, reference, labels, uid_of, rng, 1 - 0.05 * slips)
    _answers(script, reference, rng)
    script.add(EditKind.submit)
    return script


def _matched(reference: Reference, spans: dict[str, SpanState]) -> dict[str, str | None]:
    """Each span of a set matched to the gold span it stands for (None: no gold span there)."""
    taken: set[str] = set()
    matched: dict[str, str | None] = {}
    for uid, span in sorted(spans.items(), key=lambda item: (item[1].fragments, item[1].label, item[0])):
        best, best_key = None, None
        for gold_id, gold in reference.spans.items():
            if gold_id in taken:
                continue
            gold_fragments = _fragments(gold)
            common = _overlap(span.fragments, gold_fragments)
            if not common:
                continue
            key = (span.fragments == gold_fragments, span.label == gold.label, common)
            if best_key is None or key > best_key:
                best, best_key = gold_id, key
        if best is not None:
            taken.add(best)
        matched[uid] = best
    return matched


def refine_script(
    reference: Reference,
    base: SetState,
    physician: SimulatedPhysician,
    rng: random.Random,
    *,
    notice: float,
    catch_missing: float,
    accept_one_by_one: float,
) -> Script:
    """A physician refines a base (pre-labels, or another physician's set): fixes what they notice in
    text order, adds what is missing, accepts the rest at once, draws the missing relations."""
    script = Script()
    slips = physician.slips
    labels = {uid: span.label for uid, span in base.spans.items()}
    uid_of: dict[str, str] = {}
    matched = _matched(reference, dict(base.spans))
    covered = {gold_id for gold_id in matched.values() if gold_id is not None}
    missing = sorted(
        (g for g in reference.spans if g not in covered), key=lambda g: _fragments(reference.spans[g])
    )
    pending = [u for u, s in base.spans.items() if s.status == SpanStatus.pending.value]
    decided: set[str] = set()
    # In text order; the uids of stored pre-labels are random, so they never decide the order.
    ordered = sorted(
        base.spans.items(), key=lambda item: (item[1].fragments, item[1].label, item[1].confidence or 0)
    )
    for uid, span in ordered:
        while missing and _fragments(reference.spans[missing[0]]) < span.fragments:
            gold_id = missing.pop(0)
            if rng.random() < catch_missing - 0.05 * slips:
                new = script.new_uid("s")
                gold = reference.spans[gold_id]
                script.add(EditKind.add, uid=new, label=gold.label, fragments=_fragments(gold))
                labels[new], uid_of[gold_id] = gold.label, new
        gold_id = matched[uid]
        sees = rng.random() < notice - 0.05 * slips
        if gold_id is None:
            if sees:
                script.add(
                    EditKind.reject if span.status == SpanStatus.pending.value else EditKind.delete, uid=uid
                )
                decided.add(uid)
                labels.pop(uid)
            continue
        gold = reference.spans[gold_id]
        uid_of[gold_id] = uid
        if sees and span.fragments != _fragments(gold):
            script.add(EditKind.modify, uid=uid, fragments=_fragments(gold))
            decided.add(uid)
        if sees and span.label != gold.label:
            script.add(EditKind.relabel, uid=uid, label=gold.label, broken_relations="retype")
            labels[uid] = gold.label
            decided.add(uid)
        if (
            uid not in decided
            and span.status == SpanStatus.pending.value
            and rng.random() < accept_one_by_one
        ):
            script.add(EditKind.accept, uid=uid)
            decided.add(uid)
    for gold_id in missing:
        if rng.random() < catch_missing - 0.05 * slips:
            new = script.new_uid("s")
            gold = reference.spans[gold_id]
            script.add(EditKind.add, uid=new, label=gold.label, fragments=_fragments(gold))
            labels[new], uid_of[gold_id] = gold.label, new
    rest = [u for u in pending if u not in decided and u in labels]
    rest += [u for u, r in base.relations.items() if r.status == SpanStatus.pending.value]
    if rest:
        script.add(EditKind.accept_all, uids=tuple(sorted(rest)))
    existing = {(r.type, r.head, r.tail) for r in base.relations.values()}
    set_attributes = {u for u, s in base.spans.items() if s.attributes}
    _attributes(
        script, reference, labels, {g: u for g, u in uid_of.items() if u not in set_attributes}, rng, slips
    )
    _relations(script, reference, labels, uid_of, rng, notice, existing)
    _answers(script, reference, rng)
    script.add(EditKind.submit)
    return script


# ---- when: a fake clock of page sessions with activity, pauses and hidden stretches -------------------


@dataclass(frozen=True)
class Stamp:
    """One event of the timeline: a time event (``kind``), or step ``step`` of the script."""

    session: int
    monotonic_ms: float
    kind: str | None = None
    step: int | None = None


def timeline(steps: int, minutes: float, idle_seconds: float, rng: random.Random) -> list[Stamp]:
    """The events of a note worked for ``minutes`` of active time (metrics.md): page sessions opened
    and closed, the steps spread over them with activity between (every gap shorter than the idle
    threshold), sometimes an idle pause (counted only up to the threshold) or a hidden stretch (not
    counted). The submit is the last step; the close after it falls outside the note's time."""
    pauses = 1 if rng.random() < 0.35 else 0
    budget_ms = minutes * 60_000 - pauses * idle_seconds * 1000
    split = rng.randrange(steps // 3, 2 * steps // 3) if steps >= 6 and rng.random() < 0.25 else None
    # Slot i is the time before step i (the first is spent reading); a split adds the close of session 0.
    weights = [rng.uniform(4.0, 8.0)] + [rng.expovariate(1.0) + 0.15 for _ in range(1, steps)]
    if split is not None:
        weights[split] += rng.uniform(2.0, 4.0)  # reading the note again in the second session
        weights.append(rng.uniform(0.2, 0.8))  # before the close of the first session
    scale = budget_ms / sum(weights)
    durations = [w * scale for w in weights]
    pause_before = rng.randrange(1, steps) if pauses and steps > 1 else None
    hidden_in = rng.randrange(0, steps) if steps and rng.random() < 0.2 else None
    max_gap_ms = min(25_000.0, idle_seconds * 1000 * 0.5)

    stamps: list[Stamp] = []
    session, now = 0, rng.uniform(300.0, 2500.0)
    stamps.append(Stamp(session, now, kind=EditKind.open))

    def spend(duration_ms: float, hide: bool = False) -> None:
        """Pass ``duration_ms`` of active time, with activity so that no gap reaches the threshold."""
        nonlocal now
        pieces = max(1, math.ceil(duration_ms / rng.uniform(0.5 * max_gap_ms, max_gap_ms)))
        width = duration_ms / pieces  # evenly spread with some jitter: no gap beyond 1.6 widths
        cuts = [(i + rng.uniform(-0.3, 0.3)) * width for i in range(1, pieces)]
        hide_at = rng.randrange(0, pieces) if hide else None
        last = 0.0
        for index, cut in enumerate([*cuts, duration_ms]):
            if index == hide_at:  # the physician looks at another window: hidden time does not count
                stamps.append(Stamp(session, now, kind=EditKind.hidden))
                now += rng.uniform(60_000, 240_000)
                stamps.append(Stamp(session, now, kind=EditKind.visible))
            now += cut - last
            last = cut
            if index < pieces - 1:
                stamps.append(Stamp(session, now, kind=EditKind.activity))

    for step in range(steps):
        if step == pause_before:  # away from the desk: an idle gap, counted only up to the threshold
            now += rng.uniform(2.5, 9.0) * 60_000
            stamps.append(Stamp(session, now, kind=EditKind.activity))
        if step == split:
            spend(durations[-1])
            stamps.append(Stamp(session, now, kind=EditKind.close))
            session, now = 1, rng.uniform(300.0, 2500.0)
            stamps.append(Stamp(session, now, kind=EditKind.open))
        spend(durations[step], hide=step == hidden_in)
        stamps.append(Stamp(session, now, step=step))
    now += rng.uniform(800.0, 3000.0)
    stamps.append(Stamp(session, now, kind=EditKind.close))
    return stamps


class StudyClock:
    """Wall-clock time of each physician's working day: sets one after another, with breaks."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.free: dict[str, datetime] = {}

    def begin(self, who: str, not_before: datetime | None, rng: random.Random) -> datetime:
        at = max(self.free.get(who, self.start), not_before or self.start)
        at += timedelta(minutes=rng.uniform(3, 25))
        if at.hour >= 17:  # the next working morning
            at = (at + timedelta(days=1)).replace(hour=8, minute=rng.randrange(0, 50), second=0)
        return at

    def end(self, who: str, at: datetime) -> None:
        self.free[who] = at


# ---- doing it: the editor's rules, its write path, inside one transaction -----------------------------


class SetWork:
    """One set being worked: each step planned and applied by the editor's own rules (as
    app.services.editing.apply_edit does) and logged as the edit event it would log, with the page's
    time events between; ``finish`` then writes the set as its log leaves it, with the editor's write
    path (write_change), and the log itself, in a few statements. Replaying the log from the set's
    start gives what is stored, as for any set the editor wrote."""

    def __init__(
        self,
        db: Session,
        context: editing.EditorContext,
        user_id: int,
        state: SetState,
        version: int = 0,
        stored: SetState | None = None,
    ) -> None:
        self.db = db
        self.context = context
        self.user_id = user_id
        self.stored = state if stored is None else stored  # what the set's rows hold now
        self.state = state
        self.version = version
        self.rows: list[dict[str, Any]] = []  # the log, in order
        self.logged: dict[str, tuple[str, dict, dict]] = {}  # client id -> kind, before, after
        self.client_ids: list[str | None] = []  # per step: its client id, None if refused
        self.time_events = 0
        self.submitted_at: datetime | None = None

    @property
    def edits(self) -> int:
        return len(self.logged)

    def _row(
        self,
        page_session: str,
        kind: str,
        client_id: str,
        monotonic_ms: float | None,
        wall: datetime,
        version: int | None = None,
        before: dict | None = None,
        after: dict | None = None,
    ) -> None:
        self.rows.append(
            {
                "annotation_set_id": self.context.annotation_set.id,
                "user_id": self.user_id,
                "page_session_id": page_session,
                "kind": kind,
                "client_id": client_id,
                "client_monotonic_ms": monotonic_ms,
                "client_wall_time": wall,
                "set_version": version,
                "before": before,
                "after": after,
            }
        )

    def time_event(self, page_session: str, kind: str, monotonic_ms: float, wall: datetime) -> None:
        self.time_events += 1
        self._row(page_session, kind, f"{page_session}-t{self.time_events}", monotonic_ms, wall)

    def _undo_change(self, kind: str, target: str | None):
        """Undo reverses an earlier edit, redo an earlier undo (app.services.editing's rule)."""
        if target is None or target not in self.logged:
            raise EditRefused(f"target: no edit {target} that can be {kind}ne")
        return editing.reversal(kind, target, *self.logged[target])

    def edit(self, step: Step, page_session: str, monotonic_ms: float | None, wall: datetime) -> bool:
        """Apply one step; False if the editor would refuse it (the physician then does without)."""
        fields = dict(step.fields)
        target_step = fields.pop("target_step", None)
        client_id = f"{page_session}-e{len(self.client_ids) + 1}"
        target = self.client_ids[target_step] if target_step is not None else None
        request = editing.EditRequest(
            kind=step.kind,
            client_id=client_id,
            page_session=page_session,
            version=self.version,
            monotonic_ms=monotonic_ms,
            wall_time=wall,
            target=target,
            **fields,
        )
        try:
            if request.kind in (EditKind.undo, EditKind.redo):
                change = self._undo_change(request.kind, target)
            else:
                change = editing.planned_change(self.db, self.context, self.state, request)
            new_state = apply_change(self.state, change)
        except EditRefused:
            self.client_ids.append(None)
            return False
        self.version += 1
        before, after = change.to_json()
        if target is not None:
            after["target"] = target
        self._row(page_session, request.kind, client_id, monotonic_ms, wall, self.version, before, after)
        self.logged[client_id] = (request.kind, before, after)
        self.client_ids.append(client_id)
        self.state = new_state
        if request.kind == EditKind.submit:
            self.submitted_at = wall
        return True

    def play(self, script: Script, stamps: list[Stamp], start: datetime, tag: str) -> datetime:
        """Work the script along its timeline from ``start``; returns when the last event happened."""
        opened: dict[int, tuple[datetime, float]] = {}
        wall = start
        for stamp in stamps:
            if stamp.session not in opened:  # a later page session opens after a break
                at = wall + timedelta(minutes=40) if opened else start
                opened[stamp.session] = (at, stamp.monotonic_ms)
            session_start, first_ms = opened[stamp.session]
            wall = session_start + timedelta(milliseconds=stamp.monotonic_ms - first_ms)
            page_session = f"{tag}-p{stamp.session + 1}"
            if stamp.step is None:
                self.time_event(page_session, stamp.kind, stamp.monotonic_ms, wall)
            else:
                self.edit(script.steps[stamp.step], page_session, stamp.monotonic_ms, wall)
        return wall

    def finish(self) -> None:
        """Store the set as its log leaves it, and the log; a submit releases what waits for it."""
        start, end = self.stored, self.state
        span_uids = start.spans.keys() | end.spans.keys()
        relation_uids = start.relations.keys() | end.relations.keys()
        answer_keys = start.answers.keys() | end.answers.keys()
        fields = [
            name for name in ("status", "note", "skip_reason") if getattr(start, name) != getattr(end, name)
        ]
        net = Change(
            {u: start.spans.get(u) for u in span_uids},
            {u: end.spans.get(u) for u in span_uids},
            {name: getattr(start, name) for name in fields},
            {name: getattr(end, name) for name in fields},
            {u: start.relations.get(u) for u in relation_uids},
            {u: end.relations.get(u) for u in relation_uids},
            {k: start.answers.get(k) for k in answer_keys},
            {k: end.answers.get(k) for k in answer_keys},
        )
        annotation_set = self.context.annotation_set
        batch = StatementBatch()
        editing.write_change(self.db, annotation_set, net, batch)
        bumped: dict[str, Any] = {"version": self.version}
        if self.submitted_at is not None:
            bumped["submitted_at"] = self.submitted_at
        editing.queue_set_update(batch, annotation_set, bumped)
        batch.send(self.db)
        # The log in one multi-row insert, in order (ids follow it), as record_time_events stores events.
        self.db.execute(insert(EditEvent), self.rows)


# ---- the study --------------------------------------------------------------------------------------


def _minutes(
    condition: Condition, physician: SimulatedPhysician, size: float, rng: random.Random, calibration: bool
) -> float:
    """Active minutes of one note: the published mean, the physician's pace, the note's length, chance."""
    minutes = MEAN_MINUTES[condition] * physician.speed * size**0.5 * rng.lognormvariate(0.0, 0.15)
    return minutes * (CALIBRATION_FACTOR if calibration else 1.0)


def _accounts(db: Session) -> tuple[dict[str, User], User]:
    users = {}
    for username, display_name in SIMULATED_ACCOUNTS.items():
        role = Role.lead.value if username == LEAD[0] else Role.annotator.value
        user = User(username=username, display_name=display_name, role=role, password_hash=NO_PASSWORD)
        db.add(user)
        db.flush()
        audit.record(
            db,
            "user.create",
            object_type="user",
            object_id=user.id,
            details={"username": username, "role": role, "source": "demo (simulated)"},
        )
        users[username] = user
    return {p.username: users[p.username] for p in PHYSICIANS}, users[LEAD[0]]


@dataclass
class _Note:
    document: Document
    reference: Reference
    pre_set: AnnotationSet


def is_loaded(db: Session) -> bool:
    return db.scalar(select(Study.id).where(Study.name == STUDY_NAME)) is not None


def simulate_study(
    db: Session, project: Project, references: dict[str, Reference], *, today: datetime | None = None
) -> dict[str, int]:
    """Work the finished study into the demo project, inside the caller's transaction; what it made."""
    schema = LabelSchema.model_validate(project.label_schema)
    settings = StudySettings.model_validate(project.study_settings or {})
    idle = settings.idle_threshold_seconds
    physicians, lead = _accounts(db)
    notes: dict[str, _Note] = {}
    for external_id in (*CALIBRATION_NOTES, *STUDY_NOTES):
        document = db.scalar(
            select(Document).where(Document.project_id == project.id, Document.external_id == external_id)
        )
        pre_set = db.scalar(
            select(AnnotationSet).where(
                AnnotationSet.document_id == document.id,
                AnnotationSet.origin == SetOrigin.pre_annotation.value,
            )
        )
        notes[external_id] = _Note(document, references[external_id], pre_set)
    base_run = db.get(PreAnnotationRun, notes[CALIBRATION_NOTES[0]].pre_set.pre_annotation_run_id)
    base_run.is_study_base = True  # the simulated study refined this run's pre-labels
    mean_size = sum(len(n.reference.spans) for n in notes.values()) / len(notes)
    today = (today or datetime.now(UTC)).replace(hour=8, minute=30, second=0, microsecond=0)
    clock = StudyClock(today - timedelta(days=21))
    logins = [p.username for p in PHYSICIANS]
    study = Study(
        project_id=project.id,
        name=STUDY_NAME,
        seed=SEED,
        status=StudyStatus.released.value,
        pre_annotation_run_id=base_run.id,
        created_by=lead.id,
        created_at=clock.start,
        released_at=None,
        plan={
            "annotators": logins,
            "shares": {c.value: 1 for c in Condition},
            "overlap_documents": 0,
            "overlap_annotators": 3,
            "calibration_documents": list(CALIBRATION_NOTES),
            "documents": list(STUDY_NOTES),
            "batch_id": notes[CALIBRATION_NOTES[0]].document.batch_id,
            "simulated": True,
        },
    )
    db.add(study)
    db.flush()
    positions = dict.fromkeys(logins, 0)

    def queued(
        physician: SimulatedPhysician,
        note: _Note,
        condition: Condition,
        *,
        calibration: bool,
        base: Assignment | None = None,
    ) -> Assignment:
        """The note in the physician's queue; a refine_human note waits for its base's submit."""
        assignment = Assignment(
            project_id=project.id,
            document_id=note.document.id,
            annotator_id=physicians[physician.username].id,
            condition=condition.value,
            queue_position=positions[physician.username],
            is_calibration=calibration,
            study_id=study.id,
            base_assignment_id=base.id if base is not None else None,
            released_at=null(),  # None would let the column default (now) release it
        )
        db.add(assignment)
        db.flush()
        positions[physician.username] += 1
        return assignment

    def released(assignment: Assignment, base_set: AnnotationSet | None, at: datetime) -> AnnotationSet:
        """The physician's set for the note, started from its base (the rules of check_base). Its
        copy of the base is written with the physician's edits on it (SetWork.finish): the same rows
        as a copy made now and edited, and replay starts from the base itself."""
        condition = Condition(assignment.condition)
        check_base(condition, base_set, assignment.document_id, assignment.annotator_id)
        annotation_set = AnnotationSet(
            document_id=assignment.document_id,
            origin=SetOrigin.annotator.value,
            annotator_id=assignment.annotator_id,
            base_set_id=base_set.id if base_set is not None else None,
            condition=condition.value,
        )
        db.add(annotation_set)
        db.flush()
        assignment.annotation_set_id = annotation_set.id
        assignment.released_at = at
        return annotation_set

    # The design: calibration notes to everyone (refine_llm), then each note in all three conditions,
    # the roles rotating so that every physician works in every condition.
    work: list[tuple[SimulatedPhysician, _Note, Condition, bool, Assignment]] = []
    for external_id in CALIBRATION_NOTES:
        for physician in PHYSICIANS:
            assignment = queued(physician, notes[external_id], Condition.refine_llm, calibration=True)
            work.append((physician, notes[external_id], Condition.refine_llm, True, assignment))
    scratch_of: dict[str, Assignment] = {}
    later: list[tuple[SimulatedPhysician, _Note, Assignment]] = []
    for index, external_id in enumerate(STUDY_NOTES):
        first, second, third = (PHYSICIANS[(index + k) % 3] for k in range(3))
        note = notes[external_id]
        scratch_of[external_id] = queued(first, note, Condition.scratch, calibration=False)
        work.append((first, note, Condition.scratch, False, scratch_of[external_id]))
        refine = queued(third, note, Condition.refine_llm, calibration=False)
        work.append((third, note, Condition.refine_llm, False, refine))
        later.append(
            (
                second,
                note,
                queued(second, note, Condition.refine_human, calibration=False, base=scratch_of[external_id]),
            )
        )

    made = {"sets": 0, "edits": 0, "time_events": 0}
    submitted_at: dict[int, datetime] = {}

    def work_on(
        physician: SimulatedPhysician,
        note: _Note,
        condition: Condition,
        calibration: bool,
        assignment: Assignment,
        base_set: AnnotationSet | None,
        released_at: datetime,
    ) -> None:
        tag = f"{note.document.external_id}-{physician.username}"
        rng = _rng(tag, condition.value)
        annotation_set = released(assignment, base_set, released_at)
        base = editing.starting_state_of(db, annotation_set)
        if condition == Condition.scratch:
            script = scratch_script(note.reference, physician, rng)
        elif condition == Condition.refine_llm:
            script = refine_script(
                note.reference, base, physician, rng, notice=0.9, catch_missing=0.85, accept_one_by_one=0.3
            )
        else:
            script = refine_script(
                note.reference, base, physician, rng, notice=0.75, catch_missing=0.6, accept_one_by_one=0.15
            )
        size = len(note.reference.spans) / mean_size
        minutes = _minutes(condition, physician, size, rng, calibration)
        stamps = timeline(len(script.steps), minutes, idle, rng)
        set_work = SetWork(
            db,
            editing.EditorContext(annotation_set, note.document, project, schema, settings),
            physicians[physician.username].id,
            base,
            stored=SetState(),  # nothing of it is stored yet, not even its copy of the base
        )
        start = clock.begin(physician.username, released_at, rng)
        end = set_work.play(script, stamps, start, f"sim{annotation_set.id}")
        set_work.finish()
        clock.end(physician.username, end)
        submitted_at[annotation_set.id] = end
        made["sets"] += 1
        made["edits"] += set_work.edits
        made["time_events"] += set_work.time_events

    for physician, note, condition, calibration, assignment in work:
        if calibration:
            work_on(physician, note, condition, True, assignment, note.pre_set, clock.start)
    # The lead read the calibration agreement and released the rest of the study.
    study.released_at = max(submitted_at.values()) + timedelta(hours=1)
    for physician, note, condition, calibration, assignment in work:
        if not calibration:
            base_set = note.pre_set if condition == Condition.refine_llm else None
            work_on(physician, note, condition, False, assignment, base_set, study.released_at)
    for physician, note, assignment in later:
        # Released when its base physician submitted the scratch set it refines.
        base_set = db.get(AnnotationSet, db.get(Assignment, assignment.base_assignment_id).annotation_set_id)
        work_on(
            physician, note, Condition.refine_human, False, assignment, base_set, submitted_at[base_set.id]
        )

    made["gold_edits"] = _adjudicate(
        db,
        project,
        schema,
        settings,
        notes[ADJUDICATED_NOTE],
        lead,
        max(submitted_at.values()) + timedelta(days=1),
    )
    made["run"] = run_term_list(db, project.id, lead)
    # The study is over: the simulated accounts are disabled (and have no password anyway), so nobody
    # logs in as them and no new study is offered them.
    for user in [*physicians.values(), lead]:
        user.is_active = False
    audit.record(
        db,
        "demo.simulated_study",
        user_id=lead.id,
        object_type="study",
        object_id=study.id,
        details={"simulated": True, **made},
    )
    return made


def _adjudicate(
    db: Session,
    project: Project,
    schema: LabelSchema,
    settings: StudySettings,
    note: _Note,
    lead: User,
    start: datetime,
) -> int:
    """The simulated lead settles one calibration note into gold: what all agreed on comes proposed;
    the lead keeps a physician's version where one is right (one disputed span as genuinely ambiguous),
    adds or removes the rest, then, in a second sitting, the relations and answers,
    and submits. Timed like a physician's work."""
    work = adjudication.physicians_work(db, note.document.id)
    # Gold and its first event (what all agreed on), by the adjudication service itself.
    gold_id = adjudication.start_gold(_within(db), project.id, note.document.id, lead.id, now=start)
    gold = db.get(AnnotationSet, gold_id)
    context = editing.EditorContext(gold, note.document, project, schema, settings)
    state = editing.load_state(db, gold)
    set_work = SetWork(db, context, lead.id, state, version=gold.version)
    reference = note.reference
    wanted = {(s.label, _fragments(s)): gold_id for gold_id, s in reference.spans.items()}
    minutes = ADJUDICATION_MINUTES * _rng("adjudication", note.document.external_id).lognormvariate(0.0, 0.15)

    spans = Script()
    versions = {(s.label, s.fragments): (w.set_id, uid) for w in work for uid, s in w.state.spans.items()}
    labels_at: dict[tuple[tuple[int, int], ...], set[str]] = {}
    for w in work:
        for s in w.state.spans.values():
            labels_at.setdefault(s.fragments, set()).add(s.label)
    in_gold = {(s.label, s.fragments): uid for uid, s in state.spans.items()}
    # The lead keeps one disputed span as genuinely ambiguous: one the physicians labelled differently,
    # or else the first one that not all of them marked.
    adoptable = [key for key in sorted(wanted, key=lambda k: k[1]) if key not in in_gold and key in versions]
    ambiguous = next(
        (k for k in adoptable if len(labels_at.get(k[1], ())) >= 2), adoptable[0] if adoptable else None
    )
    for key in sorted(wanted, key=lambda k: k[1]):
        if key in in_gold:
            continue
        label, fragments = key
        if key in versions:
            source_set, source_uid = versions[key]
            spans.add(
                EditKind.adopt,
                source_set=source_set,
                source_uid=source_uid,
                value=True if key == ambiguous else None,
            )
        else:
            spans.add(EditKind.add, uid=spans.new_uid("g"), label=label, fragments=fragments)
    for key, uid in in_gold.items():
        if key not in wanted:
            spans.add(EditKind.delete, uid=uid)
    end = start
    if spans.steps:
        stamps = timeline(
            len(spans.steps),
            minutes * 0.7,
            settings.idle_threshold_seconds,
            _rng("adjudication spans", note.document.external_id),
        )
        end = set_work.play(spans, stamps, start, f"sim{gold.id}-a")

    # The relations name gold's spans by the uids they got when kept.
    state = set_work.state
    uid_by_key = {(s.label, s.fragments): uid for uid, s in state.spans.items()}
    gold_uid = {gold_id: uid_by_key.get(key) for key, gold_id in wanted.items()}
    present = {(r.type, r.head, r.tail) for r in state.relations.values()}
    drawn = {
        (
            r.type,
            w.state.spans[r.head].label,
            w.state.spans[r.head].fragments,
            w.state.spans[r.tail].fragments,
        ): (w.set_id, uid)
        for w in work
        for uid, r in w.state.relations.items()
    }
    rest = Script()
    for relation_type, head, tail in reference.relations:
        head_uid, tail_uid = gold_uid.get(head), gold_uid.get(tail)
        if head_uid is None or tail_uid is None or (relation_type, head_uid, tail_uid) in present:
            continue
        key = (
            relation_type,
            reference.spans[head].label,
            _fragments(reference.spans[head]),
            _fragments(reference.spans[tail]),
        )
        kept = sum(1 for step in rest.steps if step.kind == EditKind.adopt)
        if key in drawn and kept < RELATIONS_KEPT:
            rest.add(EditKind.adopt, source_set=drawn[key][0], source_uid=drawn[key][1])
        else:
            rest.add(
                EditKind.relation_add,
                uid=rest.new_uid("gr"),
                label=relation_type,
                head=head_uid,
                tail=tail_uid,
            )
    wanted_relations = {(t, gold_uid.get(h), gold_uid.get(k)) for t, h, k in reference.relations}
    for uid, r in state.relations.items():
        if (r.type, r.head, r.tail) not in wanted_relations:
            rest.add(EditKind.relation_delete, uid=uid)
    if reference.diagnosis and state.answers.get("primary_diagnosis") != reference.diagnosis:
        rest.add(EditKind.answer, key="primary_diagnosis", value=reference.diagnosis)
    if state.answers.get("confidence") is None:
        rest.add(EditKind.answer, key="confidence", value=4)
    rest.add(EditKind.submit)
    stamps = timeline(
        len(rest.steps),
        minutes * 0.3,
        settings.idle_threshold_seconds,
        _rng("adjudication relations", note.document.external_id),
    )
    set_work.play(rest, stamps, end + timedelta(minutes=30), f"sim{gold.id}-b")
    set_work.finish()
    return set_work.edits


def _within(db: Session) -> sessionmaker[Session]:
    """Sessions that work inside ``db``'s transaction, each of their commits a savepoint: a service
    that owns its transaction then takes part in the caller's, and the study is stored whole or not."""
    db.flush()
    return sessionmaker(
        bind=db.connection(),
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )


def run_term_list(db: Session, project_id: int, lead: User) -> int:
    """The finished term-list run over every note, through the pre-annotation services (started, and
    each note claimed and finished as a worker would), inside the caller's transaction."""
    from app.services import pre_annotation

    sessions = _within(db)
    documents = db.scalars(select(Document.id).where(Document.project_id == project_id).order_by(Document.id))
    request = pre_annotation.RunRequest(
        name=RUN_NAME,
        method="lexicon",
        lexicon_csv=term_list_csv(),
        lexicon_source="simulated-study-terms.csv",
    )
    run_id = pre_annotation.start_run(
        sessions, project_id, request, user_id=lead.id, defer=lambda *args, **kwargs: None
    )
    for document_id in list(documents):
        work = pre_annotation.claim_note(sessions, run_id, document_id)
        pre_annotation.finish_note(sessions, work, pre_annotation.lexicon_outcome(work))
    return run_id


# ---- work on the simulated LLM endpoint ------------------------------------------------------------

LLM_RUN_NAME = "LLM pre-annotation on the simulated endpoint (simulated)"
AUGMENTATION_NAME = "Synthetic variants of the gold (simulated)"
LLM_RUN_NOTES = 3  # enough to show its prompts and answers per note; each note asks the fake server


def run_on_simulated_endpoint(sessions: sessionmaker[Session], endpoint_name: str) -> None:
    """A finished LLM run over a few notes and a finished augmentation of the gold, asked of the demo's
    fake LLM server over HTTP through the same job functions a worker runs, so that the run page shows
    each note's prompts and answers and the augmentation page its variants. Once per demo database:
    a run of that name already there is left as it is."""
    import asyncio

    from app.db.models import AugmentationRun, LlmEndpoint, PreAnnotationRun, Project
    from app.demo.seed import DEMO_PROJECT
    from app.services import augmentation, pre_annotation

    with sessions() as db:
        project_id = db.scalar(select(Project.id).where(Project.name == DEMO_PROJECT))
        endpoint_id = db.scalar(select(LlmEndpoint.id).where(LlmEndpoint.name == endpoint_name))
        lead_id = db.scalar(select(User.id).where(User.username == LEAD[0]))
        if project_id is None or endpoint_id is None:
            return
        has_run = db.scalar(
            select(PreAnnotationRun.id).where(
                PreAnnotationRun.project_id == project_id, PreAnnotationRun.name == LLM_RUN_NAME
            )
        )
        has_augmentation = db.scalar(
            select(AugmentationRun.id).where(
                AugmentationRun.project_id == project_id, AugmentationRun.name == AUGMENTATION_NAME
            )
        )
        documents = list(
            db.scalars(
                select(Document.id)
                .where(Document.project_id == project_id)
                .order_by(Document.id)
                .limit(LLM_RUN_NOTES)
            )
        )
    no_queue = lambda *args, **kwargs: None  # noqa: E731 - the notes are worked here, not queued

    async def work() -> None:
        if not has_run:
            request = pre_annotation.RunRequest(
                name=LLM_RUN_NAME, method="llm", endpoint_id=endpoint_id, few_shot=0, document_ids=documents
            )
            run_id = pre_annotation.start_run(sessions, project_id, request, user_id=lead_id, defer=no_queue)
            for document_id in documents:
                await pre_annotation.pre_annotate_note(sessions, run_id, document_id)
        if not has_augmentation:
            request = augmentation.AugmentationRequest(
                name=AUGMENTATION_NAME, endpoint_id=endpoint_id, labels=["Drug"], variants=1
            )
            try:
                run_id = augmentation.start_augmentation(
                    sessions, project_id, request, user_id=lead_id, defer=no_queue
                )
            except augmentation.AugmentationError:
                return  # no gold yet: nothing to vary
            with sessions() as db:
                from app.db.models import AugmentationResult

                sources = list(
                    db.scalars(
                        select(AugmentationResult.source_set_id).where(AugmentationResult.run_id == run_id)
                    )
                )
            for source_set_id in sources:
                await augmentation.augment_set(sessions, run_id, source_set_id)

    asyncio.run(work())
