"""The access matrix (issue 10, "Access"): for every route that names an object, every role and a user
of another project, the server refuses exactly what that caller must not see or change.

The world holds two projects, A and B, each with its own lead and physician, and an admin. The objects
the routes name are all of project A: a note, a physician's set with a span and a relation, a gold set,
a pre-annotation run, a study, an export, a held batch, an augmentation run, a lead (a user), and the
admin's endpoint and vocabulary. The routes are read from the app itself (as
test_audit_completeness.py does): a new route that names an object fails here until MATRIX says who may
use it. POSTs carry the caller's valid CSRF token, so a refusal is the access decision, and a refused
POST is shown to have changed no table.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, text
from starlette.routing import compile_path

from app.db.models import (
    AnnotationSet,
    Document,
    ExportFile,
    LlmEndpoint,
    PreAnnotationResult,
    PreAnnotationRun,
    ProjectMember,
    Relation,
    User,
)
from app.demo.seed import MEDICATION_SCHEMA
from app.domain.spans import Fragment, SpanData
from app.domain.vocabulary import Condition
from app.services import adjudication, augmentation, auth, study
from app.services.access import NOT_A_LEAD
from app.services.annotation_sets import add_spans, assign
from app.services.batches import upload_batch
from app.services.vocabularies import attach_to_project, upload_vocabulary
from app.web.app import create_app
from app.web.deps import CSRF_HEADER
from tests.conftest import EMPTY_EVERY_TABLE, log_in, login_csrf, session_csrf
from tests.services.adjudication_fixtures import physician_set
from tests.services.study_fixtures import project_with_pre_labels
from tests.web.test_audit_completeness import _all_routes, _unused_port

PASSWORD = "matrix-password"
SECRET_TAG = "confidential-a"  # in every note of project A: no refusal may show it
RELATION_UID = "strength-of-aspirin"
PHI = "Patient: John Smith, MRN 12345678, seen 03/04/2019"  # synthetic: holds a batch for review
DRUGS = "code\tpreferred_term\tsynonyms\tsemantic_type\n1191\tAspirin\tASA\tIngredient\n"


class Caller(StrEnum):
    """Who asks: a real account (or nobody), through the login form for pages, a personal API token
    for the API."""

    physician_a = "physician_a"  # dr.a: a physician of A, assigned the set the routes name
    other_physician_a = "other_physician_a"  # dr.c: a physician of A, not assigned that set
    physician_b = "physician_b"  # dr.b: a physician of project B
    lead_b = "lead_b"  # a lead of B, not a member of A
    lead_a = "lead_a"  # a lead of A
    admin = "admin"
    anonymous = "anonymous"


USERNAMES = {
    Caller.physician_a: "dr.a",
    Caller.other_physician_a: "dr.c",
    Caller.physician_b: "dr.b",
    Caller.lead_b: "lead.b",
    Caller.lead_a: "lead.a",
    Caller.admin: "admin",
}
ACCOUNTS = {
    "admin": "admin",
    "lead.a": "lead",
    "lead.b": "lead",
    "lead.a2": "lead",  # another lead, not (yet) of A: the one added and removed
    "dr.a": "annotator",
    "dr.c": "annotator",
    "dr.b": "annotator",
    "dr.s1": "annotator",  # the study's physicians
    "dr.s2": "annotator",
    "dr.managed": "annotator",  # what the accounts pages change: no caller, so no login is spoiled
}

ALLOW, LOGIN = "allowed", "login"  # 2xx/3xx; a redirect to the login page (pages) or 401 (API)


class Group(StrEnum):
    """Who may use a route, by what it names."""

    physicians_set = "dr.a's own assigned set"
    project_a = "an object of project A"
    admin = "an admin's object"
    own_token = "lead A's own API token"


_NOBODY_BUT = {caller: 403 for caller in Caller} | {Caller.anonymous: LOGIN}
EXPECTED: dict[Group, dict[Caller, str | int]] = {
    # Annotators' pages take annotators only; the set must be the physician's own assignment.
    Group.physicians_set: _NOBODY_BUT | {Caller.physician_a: ALLOW},
    # Lead pages take leads and admins; a lead must be a member of the project (else 403).
    Group.project_a: _NOBODY_BUT | {Caller.lead_a: ALLOW, Caller.admin: ALLOW},
    Group.admin: _NOBODY_BUT | {Caller.admin: ALLOW},
    # Tokens are personal: another user's token does not exist for them, whatever their role.
    Group.own_token: {caller: 404 for caller in Caller} | {Caller.lead_a: ALLOW, Caller.anonymous: LOGIN},
}


# ---- the world ---------------------------------------------------------------------------------------


@dataclass
class World:
    web: Any
    sessions: Any
    runtime: Any
    clock: Any
    users: dict[str, int]
    project_a: int
    project_b: int
    note: int  # the note of dr.a's set
    physicians_set: int  # dr.a's assigned set: a Strength span related to its Drug span
    disputed_note: int  # two physicians submitted it; its gold set is started
    gold_set: int
    run: int  # the study's base run, succeeded, with its per-note result on ``note``
    study: int
    export: int
    batch: int  # held for PHI review
    augmentation_run: int  # queued
    endpoint: int
    vocabulary: int
    token: int  # lead A's API token

    def set_version(self, set_id: int) -> int:
        with self.sessions() as db:
            return db.get(AnnotationSet, set_id).version

    def extra_run(self, status: str, *, method: str = "llm", failed_note: bool = False) -> int:
        with self.sessions.begin() as db:
            run = PreAnnotationRun(
                project_id=self.project_a, name=f"{status} run", method=method, status=status
            )
            db.add(run)
            db.flush()
            if failed_note:
                db.add(
                    PreAnnotationResult(
                        run_id=run.id, document_id=self.note, status="failed", error="timeout"
                    )
                )
            return run.id

    def credentials(self, caller: Caller, api: bool) -> dict[str, str]:
        """Log the caller in (a bearer token for the API); return the headers its requests carry."""
        self.web.cookies.clear()
        if caller == Caller.anonymous:
            # Nobody logged in, with the login form's token (and its cookie): CSRF passes, access decides.
            return {CSRF_HEADER: login_csrf(self.web)}
        if api:
            _, secret = auth.create_api_token(self.sessions, self.users[USERNAMES[caller]], "matrix")
            headers = {"Authorization": f"Bearer {secret}"}
            assert self.web.get("/api/v1/me", headers=headers).status_code == 200  # its first use, recorded
            return headers
        assert log_in(self.web, USERNAMES[caller], PASSWORD).status_code == 303
        return {CSRF_HEADER: session_csrf(self.web)}


def build_world(web, sessions, runtime, clock, password_hash: str) -> World:
    with sessions.begin() as db:
        users = {
            name: User(username=name, display_name=name, role=role, password_hash=password_hash)
            for name, role in ACCOUNTS.items()
        }
        db.add_all(users.values())
        db.flush()
        ids = {name: user.id for name, user in users.items()}
        project_a = project_with_pre_labels(db, "Project A", SECRET_TAG, 6).id
        project_b = project_with_pre_labels(db, "Project B", "b", 1).id
        db.add(ProjectMember(project_id=project_a, user_id=ids["lead.a"]))
        db.add(ProjectMember(project_id=project_b, user_id=ids["lead.b"]))
        note, disputed, other_note, *_ = db.scalars(
            select(Document.id).where(Document.project_id == project_a).order_by(Document.external_id)
        ).all()
        [note_b] = db.scalars(select(Document.id).where(Document.project_id == project_b)).all()
        run = db.scalar(select(PreAnnotationRun.id).where(PreAnnotationRun.project_id == project_a))
        text_a = db.get(Document, note).text
        aspirin, strength = text_a.index("aspirin"), text_a.index("81 mg")
        drug = SpanData("Drug", (Fragment(aspirin, aspirin + 7),))
        # dr.a's assigned set: a Strength span related to its Drug.
        mine = assign(
            db,
            project_id=project_a,
            document_id=note,
            annotator_id=ids["dr.a"],
            condition=Condition.scratch,
            queue_position=0,
        )
        physicians_set = db.get(AnnotationSet, mine.annotation_set_id)
        rows = add_spans(
            db, physicians_set, [drug, SpanData("Strength", (Fragment(strength, strength + 5),))]
        )
        db.add(
            Relation(
                annotation_set_id=physicians_set.id,
                uid=RELATION_UID,
                type="Strength-Drug",
                head_span_id=rows[1].id,
                tail_span_id=rows[0].id,
            )
        )
        # dr.c works on A too, on another note; dr.b only on B.
        assign(
            db,
            project_id=project_a,
            document_id=other_note,
            annotator_id=ids["dr.c"],
            condition=Condition.scratch,
            queue_position=0,
        )
        assign(
            db,
            project_id=project_b,
            document_id=note_b,
            annotator_id=ids["dr.b"],
            condition=Condition.scratch,
            queue_position=0,
        )
        for login in ("dr.a", "dr.c"):
            physician_set(db, disputed, ids[login], [drug], [], {})
        db.add(
            PreAnnotationResult(
                run_id=run,
                document_id=note,
                status="succeeded",
                raw_outputs=[{"chunk": 0, "prompt": "p", "response": "r"}],
            )
        )
        endpoint = LlmEndpoint(
            name="unused",
            base_url=f"http://127.0.0.1:{_unused_port()}/v1",  # nothing listens: nothing is ever asked
            model="m",
            parameters={"max_attempts": 1, "timeout_seconds": 2},
        )
        exported = runtime.settings.data_dir / f"matrix-export-{project_a}.jsonl"
        exported.write_text("{}\n")
        export = ExportFile(
            project_id=project_a,
            format="jsonl",
            status="succeeded",
            file_name="a.jsonl",
            path=str(exported),
            size_bytes=3,
        )
        db.add_all([endpoint, export])
        db.flush()
        endpoint_id, export_id = endpoint.id, export.id
    rewrite = augmentation.AugmentationRequest(
        name="rewrite", endpoint_id=endpoint_id, source="submitted", labels=["Drug"], variants=1
    )
    augmentation_run_id = augmentation.start_augmentation(sessions, project_a, rewrite, user_id=ids["lead.a"])
    gold_set = adjudication.start_gold(sessions, project_a, disputed, ids["lead.a"], now=clock())
    pilot = study.StudyRequest(
        name="pilot",
        annotators=["dr.s1", "dr.s2"],
        shares={"scratch": 1.0},
        overlap_documents=1,
        overlap_annotators=2,
        calibration_documents=1,
        seed=1,
    )
    study_id = study.commit_study(sessions, project_a, pilot, user_id=ids["lead.a"])
    held = upload_batch(
        sessions, runtime.settings, project_a, [("n1.txt", PHI.encode())], actor_id=ids["admin"]
    )
    assert held.status == "held"
    vocabulary = upload_vocabulary(
        sessions, "RxNorm subset", "RxNorm", "2026-11", "drugs.tsv", DRUGS.encode(), ids["admin"]
    ).vocabulary_id
    token, _ = auth.create_api_token(sessions, ids["lead.a"], "lead A's script")
    return World(
        web=web,
        sessions=sessions,
        runtime=runtime,
        clock=clock,
        users=ids,
        project_a=project_a,
        project_b=project_b,
        note=note,
        physicians_set=physicians_set.id,
        disputed_note=disputed,
        gold_set=gold_set,
        run=run,
        study=study_id,
        export=export_id,
        batch=held.batch_id,
        augmentation_run=augmentation_run_id,
        endpoint=endpoint_id,
        vocabulary=vocabulary,
        token=token.id,
    )


# ---- the matrix: per route, what it names and the one request a caller sends --------------------------


@dataclass
class Ask:
    path: str
    params: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    json: Any = None


@dataclass
class Entry:
    group: Group
    recipe: Callable[[World], Ask]


MATRIX: dict[tuple[str, str], Entry] = {}


def route(method: str, path: str, group: Group):
    def register(recipe: Callable[[World], Ask]) -> Callable[[World], Ask]:
        assert (method, path) not in MATRIX, f"two entries for {method} {path}"
        MATRIX[(method, path)] = Entry(group, recipe)
        return recipe

    return register


def _time_events() -> dict:
    return {"page_session": "p1", "events": [{"kind": "open", "client_id": "t1", "monotonic_ms": 0}]}


# The physician's editor, on dr.a's set.
for _suffix in ("", "/spans", "/relations", "/version"):
    route("GET", "/annotate/sets/{set_id}" + _suffix, Group.physicians_set)(
        lambda w, s=_suffix: Ask(f"/annotate/sets/{w.physicians_set}{s}")
    )
route("GET", "/annotate/sets/{set_id}/concepts", Group.physicians_set)(
    lambda w: Ask(f"/annotate/sets/{w.physicians_set}/concepts", params={"q": "asp"})
)


@route("POST", "/annotate/sets/{set_id}/edits", Group.physicians_set)
def _annotate_edit(w: World) -> Ask:
    """Delete the set's relation: refused, it stays."""
    body = {
        "kind": "relation_delete",
        "client_id": "c1",
        "page_session": "p1",
        "version": w.set_version(w.physicians_set),
        "monotonic_ms": 10.0,
        "uid": RELATION_UID,
    }
    return Ask(f"/annotate/sets/{w.physicians_set}/edits", json=body)


route("POST", "/annotate/sets/{set_id}/events", Group.physicians_set)(
    lambda w: Ask(f"/annotate/sets/{w.physicians_set}/events", json=_time_events())
)

# The lead's gold editor, on A's gold set.
for _suffix in ("", "/comparison", "/spans", "/relations", "/version"):
    route("GET", "/lead/gold/{set_id}" + _suffix, Group.project_a)(
        lambda w, s=_suffix: Ask(f"/lead/gold/{w.gold_set}{s}")
    )
route("GET", "/lead/gold/{set_id}/concepts", Group.project_a)(
    lambda w: Ask(f"/lead/gold/{w.gold_set}/concepts", params={"q": "asp"})
)


@route("POST", "/lead/gold/{set_id}/edits", Group.project_a)
def _gold_edit(w: World) -> Ask:
    body = {
        "kind": "note",
        "client_id": "n1",
        "page_session": "p1",
        "version": w.set_version(w.gold_set),
        "text": "settled",
    }
    return Ask(f"/lead/gold/{w.gold_set}/edits", json=body)


route("POST", "/lead/gold/{set_id}/events", Group.project_a)(
    lambda w: Ask(f"/lead/gold/{w.gold_set}/events", json=_time_events())
)

# The project's own pages, reports and downloads.
for _suffix, _query in (
    ("", None),
    ("/annotation.conf", None),
    ("/exports", None),
    ("/runs", None),
    ("/study", None),
    ("/dashboard", None),
    ("/report", None),
    ("/dashboard.csv", {"section": "time"}),
    ("/dashboard/section", {"section": "time"}),
    ("/adjudication", None),
    ("/augmentation", None),
):
    route("GET", "/lead/projects/{project_id}" + _suffix, Group.project_a)(
        lambda w, s=_suffix, q=_query: Ask(f"/lead/projects/{w.project_a}{s}", params=q)
    )
route("GET", "/lead/projects/{project_id}/runs/compare", Group.project_a)(
    lambda w: Ask(f"/lead/projects/{w.project_a}/runs/compare", params={"run": w.run})
)


@route("POST", "/lead/projects/{project_id}", Group.project_a)
def _save_project(w: World) -> Ask:
    form = {
        "name": "Project A, renamed",
        "guidelines": "Mark every drug.",
        "label_schema": json.dumps(MEDICATION_SCHEMA),
        "study_settings": "{}",
    }
    return Ask(f"/lead/projects/{w.project_a}", data=form)


route("POST", "/lead/projects/{project_id}/exports", Group.project_a)(
    lambda w: Ask(f"/lead/projects/{w.project_a}/exports", data={"format": "jsonl"})
)
route("POST", "/lead/projects/{project_id}/leads", Group.project_a)(
    lambda w: Ask(f"/lead/projects/{w.project_a}/leads", data={"username": "lead.a2"})
)


@route("POST", "/lead/projects/{project_id}/leads/{user_id}/remove", Group.project_a)
def _remove_lead(w: World) -> Ask:
    with w.sessions.begin() as db:
        db.add(ProjectMember(project_id=w.project_a, user_id=w.users["lead.a2"]))
    return Ask(f"/lead/projects/{w.project_a}/leads/{w.users['lead.a2']}/remove")


route("GET", "/lead/exports/{export_id}/download", Group.project_a)(
    lambda w: Ask(f"/lead/exports/{w.export}/download")
)


@route("POST", "/lead/projects/{project_id}/runs", Group.project_a)
def _start_run(w: World) -> Ask:
    form = {
        "name": "llm run",
        "method": "llm",
        "endpoint_id": str(w.endpoint),
        "prompt_schema": "direct_chunk",
        "few_shot": "0",
    }
    return Ask(f"/lead/projects/{w.project_a}/runs", data=form)


route("GET", "/lead/runs/{run_id}", Group.project_a)(lambda w: Ask(f"/lead/runs/{w.run}"))
route("GET", "/lead/runs/{run_id}/notes/{document_id}", Group.project_a)(
    lambda w: Ask(f"/lead/runs/{w.run}/notes/{w.note}")
)
route("POST", "/lead/runs/{run_id}/cancel", Group.project_a)(
    lambda w: Ask(f"/lead/runs/{w.extra_run('queued')}/cancel")
)
route("POST", "/lead/runs/{run_id}/rerun", Group.project_a)(
    lambda w: Ask(f"/lead/runs/{w.extra_run('failed', failed_note=True)}/rerun")
)
route("POST", "/lead/runs/{run_id}/study-base", Group.project_a)(
    lambda w: Ask(f"/lead/runs/{w.extra_run('succeeded', method='imported')}/study-base")
)


@route("POST", "/lead/projects/{project_id}/study", Group.project_a)
def _commit_study(w: World) -> Ask:
    form = {
        "action": "commit",
        "name": "second",
        "annotators": ["dr.a", "dr.c"],
        "share_scratch": "1",
        "share_refine_llm": "0",
        "share_refine_human": "0",
        "overlap_documents": "0",
        "overlap_annotators": "2",
        "calibration_documents": "0",
        "seed": "2",
    }
    with w.sessions.begin() as db:  # notes in no study yet, for the design to take
        for i in range(2):
            body = f"Note fresh {i}: aspirin."
            db.add(
                Document(
                    project_id=w.project_a,
                    external_id=f"fresh-{i}",
                    text=body,
                    sha256=hashlib.sha256(body.encode()).hexdigest(),
                )
            )
    return Ask(f"/lead/projects/{w.project_a}/study", data=form)


route("POST", "/lead/studies/{study_id}/release", Group.project_a)(
    lambda w: Ask(f"/lead/studies/{w.study}/release")
)
route("GET", "/lead/studies/{study_id}/assignments.csv", Group.project_a)(
    lambda w: Ask(f"/lead/studies/{w.study}/assignments.csv")
)
route("POST", "/lead/projects/{project_id}/adjudication/{document_id}", Group.project_a)(
    lambda w: Ask(f"/lead/projects/{w.project_a}/adjudication/{w.disputed_note}")
)


@route("POST", "/lead/projects/{project_id}/augmentation", Group.project_a)
def _start_augmentation(w: World) -> Ask:
    form = {
        "name": "rewrite again",
        "endpoint_id": str(w.endpoint),
        "source": "submitted",
        "labels": "Drug",
        "variants": "1",
    }
    return Ask(f"/lead/projects/{w.project_a}/augmentation", data=form)


route("GET", "/lead/augmentation/{run_id}", Group.project_a)(
    lambda w: Ask(f"/lead/augmentation/{w.augmentation_run}")
)
route("POST", "/lead/augmentation/{run_id}/cancel", Group.project_a)(
    lambda w: Ask(f"/lead/augmentation/{w.augmentation_run}/cancel")
)
route("GET", "/lead/augmentation/{run_id}/export", Group.project_a)(
    lambda w: Ask(f"/lead/augmentation/{w.augmentation_run}/export", params={"format": "jsonl"})
)

# The API of leads (bearer tokens).
route("GET", "/api/v1/lead/projects/{project_id}/export", Group.project_a)(
    lambda w: Ask(f"/api/v1/lead/projects/{w.project_a}/export", params={"format": "jsonl"})
)
route("GET", "/api/v1/lead/projects/{project_id}/metrics", Group.project_a)(
    lambda w: Ask(f"/api/v1/lead/projects/{w.project_a}/metrics")
)
route("GET", "/api/v1/lead/projects/{project_id}/runs", Group.project_a)(
    lambda w: Ask(f"/api/v1/lead/projects/{w.project_a}/runs")
)
route("POST", "/api/v1/lead/projects/{project_id}/runs", Group.project_a)(
    lambda w: Ask(
        f"/api/v1/lead/projects/{w.project_a}/runs",
        json={"name": "llm run", "endpoint_id": w.endpoint, "prompt_schema": "direct_chunk", "few_shot": 0},
    )
)
route("GET", "/api/v1/lead/runs/{run_id}", Group.project_a)(lambda w: Ask(f"/api/v1/lead/runs/{w.run}"))

# The admin's objects: batches, endpoints, vocabularies.
route("GET", "/admin/batches/{batch_id}", Group.admin)(lambda w: Ask(f"/admin/batches/{w.batch}"))
route("POST", "/admin/batches/{batch_id}/release", Group.admin)(
    lambda w: Ask(f"/admin/batches/{w.batch}/release", data={"reason": "the hits are synthetic"})
)
route("POST", "/admin/batches/{batch_id}/reject", Group.admin)(
    lambda w: Ask(f"/admin/batches/{w.batch}/reject", data={"confirm": "yes"})
)
route("POST", "/admin/batches/{batch_id}/notes", Group.admin)(
    lambda w: Ask(
        f"/admin/batches/{w.batch}/notes",
        data={"note": "n1", "decision": "exclude", "reason": "the patient asked to be left out"},
    )
)
route("GET", "/api/v1/admin/batches/{batch_id}", Group.admin)(
    lambda w: Ask(f"/api/v1/admin/batches/{w.batch}")
)
route("POST", "/api/v1/admin/batches/{batch_id}/release", Group.admin)(
    lambda w: Ask(f"/api/v1/admin/batches/{w.batch}/release", json={"reason": "the hits are synthetic"})
)
route("POST", "/api/v1/admin/batches/{batch_id}/reject", Group.admin)(
    lambda w: Ask(f"/api/v1/admin/batches/{w.batch}/reject", json={"confirm": True})
)
route("POST", "/api/v1/admin/batches/{batch_id}/notes", Group.admin)(
    lambda w: Ask(
        f"/api/v1/admin/batches/{w.batch}/notes",
        json={"note": "n1", "decision": "mask", "reason": "the hits are synthetic, masked anyway"},
    )
)
# The admin's accounts pages (issue 17), on an account that is no caller.
route("GET", "/admin/users/{user_id}", Group.admin)(lambda w: Ask(f"/admin/users/{w.users['dr.managed']}"))
route("POST", "/admin/users/{user_id}/role", Group.admin)(
    lambda w: Ask(f"/admin/users/{w.users['dr.managed']}/role", data={"role": "lead"})
)
route("POST", "/admin/users/{user_id}/disable", Group.admin)(
    lambda w: Ask(f"/admin/users/{w.users['dr.managed']}/disable")
)


@route("POST", "/admin/users/{user_id}/enable", Group.admin)
def _enable_account(w: World) -> Ask:
    with w.sessions.begin() as db:
        db.get(User, w.users["dr.managed"]).is_active = False
    return Ask(f"/admin/users/{w.users['dr.managed']}/enable")


route("POST", "/admin/users/{user_id}/password", Group.admin)(
    lambda w: Ask(
        f"/admin/users/{w.users['dr.managed']}/password",
        data={"temporary_password": "Velvet-harbour-lantern-2291"},
    )
)
route("POST", "/admin/endpoints/{endpoint_id}/test", Group.admin)(
    lambda w: Ask(f"/admin/endpoints/{w.endpoint}/test")
)
route("POST", "/admin/vocabularies/{vocabulary_id}/projects", Group.admin)(
    lambda w: Ask(f"/admin/vocabularies/{w.vocabulary}/projects", data={"project_id": str(w.project_a)})
)


@route("POST", "/admin/vocabularies/{vocabulary_id}/projects/{project_id}/detach", Group.admin)
def _detach_vocabulary(w: World) -> Ask:
    attach_to_project(w.sessions, w.project_a, w.vocabulary, w.users["admin"])
    return Ask(f"/admin/vocabularies/{w.vocabulary}/projects/{w.project_a}/detach")


route("POST", "/account/tokens/{token_id}/revoke", Group.own_token)(
    lambda w: Ask(f"/account/tokens/{w.token}/revoke")
)


# ---- the routes of the app that name an object -------------------------------------------------------


def object_naming_routes(app) -> list[tuple[str, str]]:
    """(method, path template) of every GET or POST route with a path parameter."""
    return sorted(
        {
            (method, r.path)
            for r in _all_routes(app)
            if "{" in getattr(r, "path", "")
            for method in (getattr(r, "methods", None) or set()) & {"GET", "POST"}
        }
    )


ROUTES = object_naming_routes(create_app(None))
GETS = [r for r in ROUTES if r[0] == "GET"]
POSTS = [r for r in ROUTES if r[0] == "POST"]


def test_every_route_naming_an_object_is_in_the_matrix(web):
    assert object_naming_routes(web.app) == ROUTES
    missing = sorted(set(ROUTES) - set(MATRIX))
    assert not missing, f"routes that name an object but are not in MATRIX (say who may use them): {missing}"
    assert sorted(MATRIX) == ROUTES, (
        f"MATRIX lists routes the app no longer has: {sorted(set(MATRIX) - set(ROUTES))}"
    )


# ---- the tests -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_hash() -> str:
    # The login form checks real argon2 hashes; cheap parameters keep a hundred logins fast.
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


@pytest.fixture
def world(web, sessions, runtime, clock, quick_hash) -> World:
    return build_world(web, sessions, runtime, clock, quick_hash)


def _send(w: World, method: str, template: str, ask: Ask, headers: dict[str, str]):
    assert compile_path(template)[0].match(urlsplit(ask.path).path), f"{method} {template} sends {ask.path}"
    return w.web.request(method, ask.path, params=ask.params, data=ask.data, json=ask.json, headers=headers)


def _outcome(response, api: bool) -> str | int:
    """What the server did, in the matrix's terms."""
    status = response.status_code
    if api and status == 401:
        return LOGIN
    location = response.headers.get("location", "")
    if not api and status == 303 and location.startswith("/login?next="):
        return LOGIN
    if status in (401, 403, 404):
        return status
    if 200 <= status < 400:
        return ALLOW
    return f"{status}: {response.text[:300]}"


def _check(w: World, method: str, template: str, caller: Caller, response) -> list[str]:
    """The ways the answer differs from the matrix (none when it is right)."""
    expected = EXPECTED[MATRIX[(method, template)].group][caller]
    outcome = _outcome(response, template.startswith("/api/"))
    wrong = []
    if outcome != expected:
        wrong.append(f"{method} {template} as {caller}: {outcome}, expected {expected}")
    if expected != ALLOW and SECRET_TAG in response.text:
        wrong.append(f"{method} {template} as {caller}: the refusal shows a note of project A")
    group = MATRIX[(method, template)].group
    if group == Group.project_a and caller == Caller.lead_b and NOT_A_LEAD not in response.text:
        wrong.append(f"{method} {template} as {caller}: the refusal does not say {NOT_A_LEAD!r}")
    return wrong


def _table_contents(sessions) -> dict[str, tuple[int, str]]:
    """Every table (the job queue's too): its row count and a digest of its rows, so that an update
    shows as well as an insert or a delete."""
    with sessions() as db:
        tables = db.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
        ).all()
        return {
            table: tuple(
                db.execute(
                    text(
                        f"SELECT count(*), md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) "
                        f'FROM "{table}" r'
                    )
                ).one()
            )
            for table in tables
        }


def test_who_may_see_what_a_page_names(world):
    """One world for every page: reading changes no object, so every caller asks for every page in
    turn (a world per page would cost a second each). Every wrong answer is listed."""
    wrong = []
    for caller in Caller:
        for api in (False, True):
            routes = [r for r in GETS if r[1].startswith("/api/") == api]
            headers = world.credentials(caller, api) if routes else {}
            for method, template in routes:
                ask = MATRIX[method, template].recipe(world)
                wrong += _check(world, method, template, caller, _send(world, method, template, ask, headers))
    assert wrong == []
    assert (
        len(GETS) >= 30
    )  # the matrix above has them all (test_every_route_naming_an_object_is_in_the_matrix)


@pytest.mark.parametrize("route", POSTS, ids=" ".join)
def test_who_may_change_what_a_route_names(world, route, sessions, runtime, clock, quick_hash):
    """The callers refused go first, on one world: a refusal must change no table, so the world stays
    as it was for the next. Each caller allowed then gets the world as built (an allowed change must
    not spoil the next caller's world), built again after the first."""
    method, template = route
    expected = EXPECTED[MATRIX[route].group]
    headers_of = lambda w, caller: w.credentials(caller, template.startswith("/api/"))  # noqa: E731
    wrong = []
    ask = MATRIX[route].recipe(world)  # once per world: a recipe may prepare the world (attach, add notes)
    for caller in (c for c in Caller if expected[c] != ALLOW):
        headers = headers_of(world, caller)
        before = _table_contents(world.sessions)  # a login writes its own rows; the request must not
        response = _send(world, method, template, ask, headers)
        wrong += _check(world, method, template, caller, response)
        after = _table_contents(world.sessions)
        changed = sorted(t for t in before.keys() | after.keys() if before.get(t) != after.get(t))
        if changed:
            wrong.append(f"{method} {template} refused {caller} but changed these tables: {changed}")
    w = world
    for i, caller in enumerate(c for c in Caller if expected[c] == ALLOW):
        if i:
            with runtime.engine.begin() as connection:
                connection.exec_driver_sql(EMPTY_EVERY_TABLE)
            w = build_world(world.web, sessions, runtime, clock, quick_hash)
            ask = MATRIX[route].recipe(w)
        headers = headers_of(w, caller)
        wrong += _check(w, method, template, caller, _send(w, method, template, ask, headers))
    assert wrong == []


# ---- lists: a lead sees only the projects they lead ----------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "shown"),
    [
        (Caller.lead_a, ["Project A"]),
        (Caller.lead_b, ["Project B"]),
        (Caller.admin, ["Project A", "Project B"]),
    ],
)
def test_a_lead_lists_only_their_projects(world, caller, shown):
    from tests.conftest import page

    world.credentials(caller, api=False)
    rows = page(world.web.get("/lead")).select("[data-testid=project-row] td:first-child > a:first-child")
    assert [a.text for a in rows] == shown
    headers = world.credentials(caller, api=True)
    listed = world.web.get("/api/v1/lead/projects", headers=headers).json()
    assert [p["name"] for p in listed] == shown


def test_a_missing_object_is_404_and_another_projects_is_403(world):
    """The two refusals differ: a lead of B learns that A's run exists, and that it is not theirs."""
    headers = world.credentials(Caller.lead_b, api=False)
    assert world.web.get("/lead/runs/999999", headers=headers).status_code == 404
    refused = world.web.get(f"/lead/runs/{world.run}", headers=headers)
    assert refused.status_code == 403 and NOT_A_LEAD in refused.text
    api = world.credentials(Caller.lead_b, api=True)
    assert world.web.get("/api/v1/lead/runs/999999", headers=api).status_code == 404
    assert world.web.get(f"/api/v1/lead/runs/{world.run}", headers=api).json() == {"detail": NOT_A_LEAD}


def test_objects_of_two_projects_in_one_path_are_refused(world):
    """A lead of both projects still cannot read B's note through A's run, or start A's gold on B's note."""
    with world.sessions.begin() as db:
        db.add(ProjectMember(project_id=world.project_b, user_id=world.users["lead.a"]))
        note_b = db.scalar(select(Document.id).where(Document.project_id == world.project_b))
    headers = world.credentials(Caller.lead_a, api=False)
    assert world.web.get(f"/lead/runs/{world.run}/notes/{note_b}", headers=headers).status_code == 404
    before = _table_contents(world.sessions)
    response = world.web.post(f"/lead/projects/{world.project_a}/adjudication/{note_b}", headers=headers)
    assert response.status_code == 404
    assert _table_contents(world.sessions) == before
