"""Audit completeness: every state-changing route of the app, one successful request each, proves that
it leaves an audit event or an edit event behind.

The routes are read from the app itself; RECIPES holds, for each, how to set up what it needs and the
one request to send. A route without a recipe fails here, by name, so a new route cannot be added
without proving that it is audited. A route that stores nothing at all is listed in EXEMPT with the
reason, and a second test proves that it indeed changes no table.
"""

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select, text
from starlette.routing import compile_path

from app.db.models import (
    AuditEvent,
    AugmentationRun,
    EditEvent,
    LlmEndpoint,
    PreAnnotationResult,
    PreAnnotationRun,
    ProjectMember,
    User,
)
from app.domain.spans import Fragment, SpanData
from app.services import adjudication, auth, study
from app.services.batches import upload_batch
from app.services.projects import create_project
from app.services.vocabularies import attach_to_project, upload_vocabulary
from app.web.app import create_app
from app.web.deps import CSRF_HEADER, UNSAFE_METHODS
from tests.conftest import PASSWORDS, log_in, login_csrf, session_csrf
from tests.services.adjudication_fixtures import TEXT, add_note, physician_set
from tests.services.editing_fixtures import ANNOTATION_SCHEMA, METFORMIN, build_world
from tests.services.study_fixtures import project_with_pre_labels

SCHEMA = {"entity_types": [{"name": "Drug", "color": "#1f77b4", "hotkey": "d"}]}
CLEAN = "Aspirin 81 mg daily for chest pain."
PHI = "Patient: John Smith, MRN 12345678, seen 03/04/2019"  # synthetic: holds a batch for review
REASON = "the hits are synthetic, made up for this test"
DRUGS = "code\tpreferred_term\tsynonyms\tsemantic_type\n6809\tMetformin\tGlucophage\tIngredient\n"


# ---- the routes --------------------------------------------------------------------------------------


def _all_routes(app) -> list:
    """Every route of the app, those of included routers too (FastAPI keeps these as branches)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before the included-router branches: app.routes is already flat
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def state_changing_routes(app) -> list[tuple[str, str]]:
    """(method, path template) of every route answering POST, PUT, PATCH or DELETE."""
    return sorted(
        {
            (method, route.path)
            for route in _all_routes(app)
            for method in (getattr(route, "methods", None) or set()) & UNSAFE_METHODS
        }
    )


# The routes do not depend on the runtime: an app built on none (never started) lists them when the
# tests are collected, so that each route is a test case of its own.
ROUTES = state_changing_routes(create_app(None))


# ---- what a recipe works with ------------------------------------------------------------------------


@dataclass
class World:
    web: Any  # the TestClient
    sessions: Any
    runtime: Any
    accounts: dict[str, User]
    password_hashes: dict[str, str]
    clock: Any

    def user_id(self, role: str) -> int:
        return self.accounts[role].id

    def browser(self, username: str, password: str | None = None) -> str:
        """Log in through the form; return the CSRF token of the login session."""
        assert log_in(self.web, username, password).status_code == 303
        return session_csrf(self.web)

    def bearer(self, role: str) -> dict[str, str]:
        """A personal API token of the role's account, as a script sends it (no cookie)."""
        self.web.cookies.clear()
        _, secret = auth.create_api_token(self.sessions, self.user_id(role), "audit test")
        return {"Authorization": f"Bearer {secret}"}

    def project(self, name: str = "Audited", schema: dict | None = None) -> int:
        return create_project(self.sessions, name, schema or SCHEMA, actor_id=self.user_id("lead")).id

    def note(self, project_id: int, external_id: str = "note-1", body: str = CLEAN) -> int:
        with self.sessions.begin() as db:
            return add_note(db, project_id, external_id, body).id

    def endpoint(self) -> int:
        """An active LLM endpoint on a loopback port nothing listens on: nothing is ever asked."""
        with self.sessions.begin() as db:
            row = LlmEndpoint(
                name="unused",
                base_url=f"http://127.0.0.1:{_unused_port()}/v1",
                model="m",
                parameters={"max_attempts": 1, "timeout_seconds": 2},
            )
            db.add(row)
            db.flush()
            return row.id

    def held_batch(self, project_id: int) -> int:
        files = [("n1.txt", PHI.encode()), ("n2.txt", CLEAN.encode())]
        outcome = upload_batch(
            self.sessions, self.runtime.settings, project_id, files, actor_id=self.user_id("admin")
        )
        assert outcome.status == "held"
        return outcome.batch_id

    def vocabulary(self) -> int:
        outcome = upload_vocabulary(
            self.sessions,
            "RxNorm subset",
            "RxNorm",
            "2026-11",
            "drugs.tsv",
            DRUGS.encode(),
            self.user_id("admin"),
        )
        return outcome.vocabulary_id

    def disputed_note(self) -> tuple[int, int]:
        """A project with one note two physicians submitted: (project id, document id)."""
        project_id = self.project("Adjudicated", ANNOTATION_SCHEMA)
        with self.sessions.begin() as db:
            document = add_note(db, project_id, "note-1", TEXT)
            for login in ("ana", "ben"):
                physician = User(
                    username=login,
                    display_name=login,
                    role="annotator",
                    password_hash=self.password_hashes["annotator"],
                )
                db.add(physician)
                db.flush()
                label = "Reason" if login == "ana" else "ADE"
                spans = [SpanData("Drug", (Fragment(0, 9),)), SpanData(label, (Fragment(21, 29),))]
                physician_set(db, document.id, physician.id, spans, [], {})
            return project_id, document.id

    def gold(self) -> int:
        """A gold set the lead started; its version is 1."""
        project_id, document_id = self.disputed_note()
        return adjudication.start_gold(
            self.sessions, project_id, document_id, self.user_id("lead"), now=self.clock()
        )


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Send:
    """The one request of a recipe (its method is the route's)."""

    path: str
    data: dict[str, Any] | None = None
    json: Any = None
    files: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Recipe = Callable[[World], Send]
RECIPES: dict[tuple[str, str], Recipe] = {}


def recipe(method: str, path: str) -> Callable[[Recipe], Recipe]:
    def register(function: Recipe) -> Recipe:
        assert (method, path) not in RECIPES, f"two recipes for {method} {path}"
        RECIPES[(method, path)] = function
        return function

    return register


# Routes that store nothing at all, with the reason; each still has a recipe, for the second test.
EXEMPT: dict[tuple[str, str], str] = {
    ("POST", "/admin/endpoints/{endpoint_id}/test"): (
        "asks the LLM endpoint a tiny question and shows the answer; stores nothing"
    ),
}


# ---- the recipes, one per route ----------------------------------------------------------------------


@recipe("POST", "/login")
def _login(w: World) -> Send:
    token = login_csrf(w.web)
    return Send(
        "/login", data={"username": "annotator", "password": PASSWORDS["annotator"], "csrf_token": token}
    )


@recipe("POST", "/logout")
def _logout(w: World) -> Send:
    return Send("/logout", data={"csrf_token": w.browser("annotator")})


def _annotators_set(w: World) -> tuple[int, str]:
    editing_world = build_world(w.sessions, w.password_hashes["annotator"])
    return editing_world.sets["scratch"], w.browser("dr.a", PASSWORDS["annotator"])


@recipe("POST", "/annotate/sets/{set_id}/edits")
def _annotate_edit(w: World) -> Send:
    set_id, csrf = _annotators_set(w)
    body = {
        "kind": "add",
        "client_id": "c1",
        "page_session": "p1",
        "version": 0,
        "monotonic_ms": 10.0,
        "uid": "u1",
        "label": "Drug",
        "fragments": [[METFORMIN, METFORMIN + 9]],
    }
    return Send(f"/annotate/sets/{set_id}/edits", json=body, headers={CSRF_HEADER: csrf})


def _time_events() -> dict:
    return {"page_session": "p1", "events": [{"kind": "open", "client_id": "t1", "monotonic_ms": 0}]}


@recipe("POST", "/annotate/sets/{set_id}/events")
def _annotate_events(w: World) -> Send:
    set_id, csrf = _annotators_set(w)
    return Send(f"/annotate/sets/{set_id}/events", json=_time_events(), headers={CSRF_HEADER: csrf})


def _project_form(csrf: str, name: str) -> dict:
    return {
        "csrf_token": csrf,
        "name": name,
        "guidelines": "Mark every drug.",
        "schema_source": "json",
        "label_schema": json.dumps(SCHEMA),
        "study_settings": "{}",
    }


@recipe("POST", "/lead/projects")
def _lead_create_project(w: World) -> Send:
    return Send("/lead/projects", data=_project_form(w.browser("lead"), "New project"))


@recipe("POST", "/lead/projects/{project_id}")
def _lead_update_project(w: World) -> Send:
    project_id = w.project()
    return Send(f"/lead/projects/{project_id}", data=_project_form(w.browser("lead"), "Renamed"))


def _second_lead(w: World) -> int:
    with w.sessions.begin() as db:
        other = User(username="lead.two", display_name="Lead Two", role="lead",
                     password_hash=w.password_hashes["lead"])  # fmt: skip
        db.add(other)
        db.flush()
        return other.id


@recipe("POST", "/lead/projects/{project_id}/leads")
def _lead_add_lead(w: World) -> Send:
    project_id = w.project()
    _second_lead(w)
    form = {"csrf_token": w.browser("lead"), "username": "lead.two"}
    return Send(f"/lead/projects/{project_id}/leads", data=form)


@recipe("POST", "/lead/projects/{project_id}/leads/{user_id}/remove")
def _lead_remove_lead(w: World) -> Send:
    project_id = w.project()
    other_id = _second_lead(w)
    with w.sessions.begin() as db:
        db.add(ProjectMember(project_id=project_id, user_id=other_id))
    path = f"/lead/projects/{project_id}/leads/{other_id}/remove"
    return Send(path, data={"csrf_token": w.browser("lead")})


@recipe("POST", "/lead/projects/{project_id}/exports")
def _lead_export(w: World) -> Send:
    project_id = w.project()
    w.note(project_id)
    return Send(
        f"/lead/projects/{project_id}/exports", data={"csrf_token": w.browser("lead"), "format": "jsonl"}
    )


@recipe("POST", "/lead/projects/{project_id}/runs")
def _lead_start_run(w: World) -> Send:
    project_id = w.project()
    w.note(project_id)
    endpoint_id = w.endpoint()
    form = {
        "csrf_token": w.browser("lead"),
        "name": "llm run",
        "method": "llm",
        "endpoint_id": str(endpoint_id),
        "prompt_schema": "direct_chunk",
        "few_shot": "0",
    }
    return Send(f"/lead/projects/{project_id}/runs", data=form)


def _run(w: World, status: str, method: str = "llm", failed_note: bool = False) -> int:
    project_id = w.project()
    document_id = w.note(project_id)
    with w.sessions.begin() as db:
        run = PreAnnotationRun(project_id=project_id, name="run", method=method, status=status)
        db.add(run)
        db.flush()
        if failed_note:
            db.add(
                PreAnnotationResult(run_id=run.id, document_id=document_id, status="failed", error="timeout")
            )
        return run.id


@recipe("POST", "/lead/runs/{run_id}/cancel")
def _lead_cancel_run(w: World) -> Send:
    run_id = _run(w, "queued")
    return Send(f"/lead/runs/{run_id}/cancel", data={"csrf_token": w.browser("lead")})


@recipe("POST", "/lead/runs/{run_id}/rerun")
def _lead_rerun(w: World) -> Send:
    run_id = _run(w, "failed", failed_note=True)
    return Send(f"/lead/runs/{run_id}/rerun", data={"csrf_token": w.browser("lead")})


@recipe("POST", "/lead/runs/{run_id}/study-base")
def _lead_study_base(w: World) -> Send:
    run_id = _run(w, "succeeded", method="imported")
    return Send(f"/lead/runs/{run_id}/study-base", data={"csrf_token": w.browser("lead")})


STUDY_ANNOTATORS = ["dr.a", "dr.b", "dr.c"]


def _study_world(w: World) -> int:
    with w.sessions.begin() as db:
        db.add_all(
            User(
                username=login,
                display_name=login,
                role="annotator",
                password_hash=w.password_hashes["annotator"],
            )
            for login in STUDY_ANNOTATORS
        )
        project_id = project_with_pre_labels(db, "Study", "n", 14).id
        db.add(ProjectMember(project_id=project_id, user_id=w.user_id("lead")))
        return project_id


@recipe("POST", "/lead/projects/{project_id}/study")
def _lead_commit_study(w: World) -> Send:
    project_id = _study_world(w)
    form = {
        "csrf_token": w.browser("lead"),
        "action": "commit",
        "name": "pilot",
        "annotators": STUDY_ANNOTATORS,
        "share_scratch": "1",
        "share_refine_llm": "1",
        "share_refine_human": "1",
        "overlap_documents": "2",
        "overlap_annotators": "2",
        "calibration_documents": "2",
        "seed": "3",
    }
    return Send(f"/lead/projects/{project_id}/study", data=form)


@recipe("POST", "/lead/studies/{study_id}/release")
def _lead_release_study(w: World) -> Send:
    project_id = _study_world(w)
    wanted = study.StudyRequest(
        name="pilot",
        annotators=STUDY_ANNOTATORS,
        shares={"scratch": 0.5, "refine_llm": 0.5},
        overlap_documents=2,
        overlap_annotators=2,
        calibration_documents=2,
        seed=3,
    )
    study_id = study.commit_study(w.sessions, project_id, wanted, user_id=w.user_id("lead"))
    return Send(f"/lead/studies/{study_id}/release", data={"csrf_token": w.browser("lead")})


@recipe("POST", "/lead/projects/{project_id}/adjudication/{document_id}")
def _lead_start_adjudication(w: World) -> Send:
    project_id, document_id = w.disputed_note()
    return Send(
        f"/lead/projects/{project_id}/adjudication/{document_id}", data={"csrf_token": w.browser("lead")}
    )


@recipe("POST", "/lead/gold/{set_id}/edits")
def _lead_gold_edit(w: World) -> Send:
    gold_id = w.gold()
    body = {"kind": "note", "client_id": "n1", "page_session": "p1", "version": 1, "text": "settled"}
    return Send(f"/lead/gold/{gold_id}/edits", json=body, headers={CSRF_HEADER: w.browser("lead")})


@recipe("POST", "/lead/gold/{set_id}/events")
def _lead_gold_events(w: World) -> Send:
    gold_id = w.gold()
    return Send(f"/lead/gold/{gold_id}/events", json=_time_events(), headers={CSRF_HEADER: w.browser("lead")})


@recipe("POST", "/lead/projects/{project_id}/augmentation")
def _lead_start_augmentation(w: World) -> Send:
    project_id, _ = w.disputed_note()
    endpoint_id = w.endpoint()
    form = {
        "csrf_token": w.browser("lead"),
        "name": "rewrite",
        "endpoint_id": str(endpoint_id),
        "source": "submitted",
        "labels": "Drug",
        "variants": "1",
    }
    return Send(f"/lead/projects/{project_id}/augmentation", data=form)


@recipe("POST", "/lead/augmentation/{run_id}/cancel")
def _lead_cancel_augmentation(w: World) -> Send:
    project_id = w.project()
    with w.sessions.begin() as db:
        run = AugmentationRun(project_id=project_id, name="rewrite", status="queued")
        db.add(run)
        db.flush()
        run_id = run.id
    return Send(f"/lead/augmentation/{run_id}/cancel", data={"csrf_token": w.browser("lead")})


@recipe("POST", "/admin/users")
def _admin_add_user(w: World) -> Send:
    form = {
        "csrf_token": w.browser("admin"),
        "username": "dr.new",
        "password": "a long enough password",
        "role": "annotator",
        "display_name": "Dr New",
    }
    return Send("/admin/users", data=form)


@recipe("POST", "/admin/users/{user_id}/role")
def _admin_change_role(w: World) -> Send:
    path = f"/admin/users/{w.user_id('annotator')}/role"
    return Send(path, data={"csrf_token": w.browser("admin"), "role": "lead"})


@recipe("POST", "/admin/users/{user_id}/disable")
def _admin_disable_account(w: World) -> Send:
    return Send(f"/admin/users/{w.user_id('annotator')}/disable", data={"csrf_token": w.browser("admin")})


@recipe("POST", "/admin/users/{user_id}/enable")
def _admin_enable_account(w: World) -> Send:
    with w.sessions.begin() as db:
        db.get(User, w.user_id("annotator")).is_active = False
    return Send(f"/admin/users/{w.user_id('annotator')}/enable", data={"csrf_token": w.browser("admin")})


@recipe("POST", "/admin/users/{user_id}/password")
def _admin_set_temporary_password(w: World) -> Send:
    form = {"csrf_token": w.browser("admin"), "temporary_password": "Velvet-harbour-lantern-2291"}
    return Send(f"/admin/users/{w.user_id('annotator')}/password", data=form)


@recipe("POST", "/admin/batches")
def _admin_upload(w: World) -> Send:
    project_id = w.project()
    form = {"csrf_token": w.browser("admin"), "project_id": str(project_id), "layer": ""}
    return Send("/admin/batches", data=form, files=[("files", ("n1.txt", CLEAN.encode(), "text/plain"))])


@recipe("POST", "/admin/batches/{batch_id}/release")
def _admin_release(w: World) -> Send:
    batch_id = w.held_batch(w.project())
    return Send(
        f"/admin/batches/{batch_id}/release", data={"csrf_token": w.browser("admin"), "reason": REASON}
    )


@recipe("POST", "/admin/batches/{batch_id}/reject")
def _admin_reject(w: World) -> Send:
    batch_id = w.held_batch(w.project())
    return Send(
        f"/admin/batches/{batch_id}/reject", data={"csrf_token": w.browser("admin"), "confirm": "yes"}
    )


@recipe("POST", "/admin/batches/{batch_id}/notes")
def _admin_decide_note(w: World) -> Send:
    batch_id = w.held_batch(w.project())
    form = {"csrf_token": w.browser("admin"), "note": "n1", "decision": "mask", "reason": REASON}
    return Send(f"/admin/batches/{batch_id}/notes", data=form)


@recipe("POST", "/admin/endpoints")
def _admin_save_endpoint(w: World) -> Send:
    form = {
        "csrf_token": w.browser("admin"),
        "name": "local vLLM",
        "base_url": "http://127.0.0.1:8001/v1",
        "model": "llama-3-8b",
        "max_concurrency": "4",
        "timeout_seconds": "30",
        "is_active": "on",
    }
    return Send("/admin/endpoints", data=form)


@recipe("POST", "/admin/endpoints/{endpoint_id}/test")
def _admin_test_endpoint(w: World) -> Send:
    endpoint_id = w.endpoint()
    return Send(f"/admin/endpoints/{endpoint_id}/test", data={"csrf_token": w.browser("admin")})


@recipe("POST", "/admin/vocabularies")
def _admin_upload_vocabulary(w: World) -> Send:
    form = {
        "csrf_token": w.browser("admin"),
        "name": "RxNorm subset",
        "system": "RxNorm",
        "version": "2026-11",
    }
    return Send("/admin/vocabularies", data=form, files={"file": ("drugs.tsv", DRUGS.encode(), "text/plain")})


@recipe("POST", "/admin/vocabularies/{vocabulary_id}/projects")
def _admin_attach_vocabulary(w: World) -> Send:
    vocabulary_id, project_id = w.vocabulary(), w.project()
    form = {"csrf_token": w.browser("admin"), "project_id": str(project_id)}
    return Send(f"/admin/vocabularies/{vocabulary_id}/projects", data=form)


@recipe("POST", "/admin/vocabularies/{vocabulary_id}/projects/{project_id}/detach")
def _admin_detach_vocabulary(w: World) -> Send:
    vocabulary_id, project_id = w.vocabulary(), w.project()
    attach_to_project(w.sessions, project_id, vocabulary_id, w.user_id("admin"))
    path = f"/admin/vocabularies/{vocabulary_id}/projects/{project_id}/detach"
    return Send(path, data={"csrf_token": w.browser("admin")})


@recipe("POST", "/account/tokens")
def _account_create_token(w: World) -> Send:
    return Send("/account/tokens", data={"csrf_token": w.browser("annotator"), "name": "script"})


@recipe("POST", "/account/tokens/{token_id}/revoke")
def _account_revoke_token(w: World) -> Send:
    token, _ = auth.create_api_token(w.sessions, w.user_id("annotator"), "old script")
    return Send(f"/account/tokens/{token.id}/revoke", data={"csrf_token": w.browser("annotator")})


@recipe("POST", "/account/password")
def _account_change_password(w: World) -> Send:
    form = {
        "csrf_token": w.browser("annotator"),
        "current_password": PASSWORDS["annotator"],
        "new_password": "Velvet-harbour-lantern-2291",
        "new_password_confirmation": "Velvet-harbour-lantern-2291",
    }
    return Send("/account/password", data=form)


@recipe("POST", "/account/editor-display")
def _account_editor_display(w: World) -> Send:
    csrf = w.browser("annotator")
    return Send("/account/editor-display", json={"display": "compact"}, headers={"X-CSRF-Token": csrf})


@recipe("POST", "/api/v1/lead/projects")
def _api_create_project(w: World) -> Send:
    return Send(
        "/api/v1/lead/projects",
        json={"name": "From a script", "label_schema": SCHEMA},
        headers=w.bearer("lead"),
    )


@recipe("POST", "/api/v1/lead/projects/{project_id}/runs")
def _api_start_run(w: World) -> Send:
    project_id = w.project()
    w.note(project_id)
    body = {
        "name": "llm run",
        "method": "llm",
        "endpoint_id": w.endpoint(),
        "prompt_schema": "direct_chunk",
        "few_shot": 0,
    }
    return Send(f"/api/v1/lead/projects/{project_id}/runs", json=body, headers=w.bearer("lead"))


@recipe("POST", "/api/v1/admin/batches")
def _api_upload(w: World) -> Send:
    project_id = w.project()
    files = [("files", ("n1.txt", CLEAN.encode(), "text/plain"))]
    return Send(
        "/api/v1/admin/batches", data={"project_id": str(project_id)}, files=files, headers=w.bearer("admin")
    )


@recipe("POST", "/api/v1/admin/batches/{batch_id}/release")
def _api_release(w: World) -> Send:
    batch_id = w.held_batch(w.project())
    return Send(
        f"/api/v1/admin/batches/{batch_id}/release", json={"reason": REASON}, headers=w.bearer("admin")
    )


@recipe("POST", "/api/v1/admin/batches/{batch_id}/reject")
def _api_reject(w: World) -> Send:
    batch_id = w.held_batch(w.project())
    return Send(f"/api/v1/admin/batches/{batch_id}/reject", json={"confirm": True}, headers=w.bearer("admin"))


@recipe("POST", "/api/v1/admin/batches/{batch_id}/notes")
def _api_decide_note(w: World) -> Send:
    batch_id = w.held_batch(w.project())
    body = {"note": "n1", "decision": "exclude", "reason": REASON}
    return Send(f"/api/v1/admin/batches/{batch_id}/notes", json=body, headers=w.bearer("admin"))


# ---- the tests ---------------------------------------------------------------------------------------


@pytest.fixture
def world(web, sessions, runtime, accounts, password_hashes, clock) -> World:
    return World(web, sessions, runtime, accounts, password_hashes, clock)


def _prepare(w: World, route: tuple[str, str]) -> Callable[[], Any]:
    """Run the route's recipe (its setup); return the sending of its one request."""
    method, template = route
    sent = RECIPES[route](w)
    assert compile_path(template)[0].match(urlsplit(sent.path).path), (
        f"the recipe of {method} {template} sends {sent.path}, another route"
    )
    return lambda: w.web.request(
        method, sent.path, data=sent.data, json=sent.json, files=sent.files, headers=sent.headers
    )


def _events(sessions) -> tuple[int, int]:
    with sessions() as db:
        return (
            db.scalar(select(func.count()).select_from(AuditEvent)),
            db.scalar(select(func.count()).select_from(EditEvent)),
        )


def test_the_routes_listed_are_the_running_apps(web):
    assert state_changing_routes(web.app) == ROUTES
    # The enumeration reaches into included routers, even a router included in another one.
    assert ("POST", "/api/v1/admin/batches") in ROUTES and ("POST", "/login") in ROUTES


def test_every_recipe_and_exemption_is_of_a_route():
    assert not set(RECIPES) - set(ROUTES), "recipes of routes the app no longer has"
    assert not set(EXEMPT) - set(RECIPES), "an exempt route needs a recipe, to prove it stores nothing"


@pytest.mark.parametrize("route", [r for r in ROUTES if r not in EXEMPT], ids=" ".join)
def test_a_state_changing_route_writes_an_audit_or_edit_event(world, route):
    method, template = route
    if route not in RECIPES:
        pytest.fail(
            f"{method} {template} has no recipe in RECIPES: add one proving it writes an audit or edit "
            "event (or list it in EXEMPT, with the reason, if it truly stores nothing)"
        )
    request = _prepare(world, route)
    audit_before, edits_before = _events(world.sessions)
    response = request()
    assert 200 <= response.status_code < 400, (
        f"{method} {template} answered {response.status_code}: {response.text[:500]}"
    )
    audit_after, edits_after = _events(world.sessions)
    assert audit_after > audit_before or edits_after > edits_before, (
        f"{method} {template} succeeded ({response.status_code}) and wrote no audit or edit event"
    )


def _table_contents(sessions) -> dict[str, tuple[int, str]]:
    """Every table of the schema, the job queue's too: its row count and a digest of its rows (so that
    an update shows as well as an insert or a delete)."""
    with sessions() as db:
        tables = db.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
        ).all()
        return {
            table: tuple(
                db.execute(
                    text(f"SELECT count(*), md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) "
                         f'FROM "{table}" r')
                ).one()
            )
            for table in tables
        }  # fmt: skip


@pytest.mark.parametrize("route", sorted(EXEMPT), ids=" ".join)
def test_an_exempt_route_changes_no_table(world, route):
    method, template = route
    request = _prepare(world, route)
    before = _table_contents(world.sessions)
    response = request()
    assert 200 <= response.status_code < 400, f"{method} {template} answered {response.status_code}"
    after = _table_contents(world.sessions)
    assert before  # the tables were found
    assert sorted(t for t in before.keys() | after.keys() if before.get(t) != after.get(t)) == [], (
        f"{method} {template} is exempt ({EXEMPT[route]}) but changed these tables"
    )


def test_no_route_can_change_or_delete_audit_events(web):
    """Audit events are only read (and exported) through the app; the database refuses changes anyway
    (migration 0009), but no route should even try."""
    audit_routes = [
        (route.path, set(route.methods or ()))
        for route in _all_routes(web.app)
        if "audit" in (getattr(route, "path", "") or "").lower()
    ]
    assert audit_routes, "the audit trail's pages are gone?"
    writers = [
        (path, sorted(methods - {"GET", "HEAD"}))
        for path, methods in audit_routes
        if methods - {"GET", "HEAD"}
    ]
    assert writers == []
