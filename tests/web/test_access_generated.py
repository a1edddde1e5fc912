"""The generated access test (issue 17): every route of the route table that names an object, every
identity, every spelling of an id that the framework might coerce, and object ids slipped into query
strings and form fields.

test_access_matrix.py says, per route, who may use it with the canonical ids. This test walks the same
route table (not a hand list: test_access_matrix fails when a route has no recipe) and asks again with
each id of the path spelled another way: ``1.0``, ``1e0``, ``+1``, `` 1``, ``01``, ``true`` and a huge
integer. A refused caller must stay refused whatever the spelling, no refusal may show a note of the
other project, and a refused POST changes no table. Then a lead of project B sends A's ids as query
parameters and form fields, on routes of B and on the routes that name no project (the create routes):
nothing of A may change or show.
"""

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import pytest
from itsdangerous import Signer
from starlette.routing import compile_path

from app.web.deps import CSRF_HEADER, SESSION_COOKIE
from tests.conftest import login_csrf
from tests.web.test_access_matrix import (
    ALLOW,
    EXPECTED,
    LOGIN,
    MATRIX,
    ROUTES,
    SECRET_TAG,
    Ask,
    Caller,
    World,
    _all_routes,
    _outcome,
    _table_contents,
    build_world,
    quick_hash,  # noqa: F401  (a fixture)
)

HUGE = "9" * 30  # beyond any integer column: must be a refusal, not a database error


def spellings(value: str) -> list[str]:
    """Other ways of writing the id ``value`` that a lenient parser reads as the same number."""
    return [f"{value}.0", f"{value}e0", f"+{value}", f" {value}", f"0{value}", "true", HUGE]


@dataclass(frozen=True)
class Identity:
    """Who asks and how: nobody, a forged cookie, a login session or a personal API token."""

    name: str
    caller: Caller  # whose row of EXPECTED applies
    token: bool = False
    forged: bool = False


IDENTITIES = [
    Identity("anonymous", Caller.anonymous),
    Identity("forged cookie", Caller.anonymous, forged=True),
]
for _caller in Caller:
    if _caller != Caller.anonymous:
        IDENTITIES += [
            Identity(f"{_caller} (session)", _caller),
            Identity(f"{_caller} (token)", _caller, True),
        ]


def credentials(w: World, who: Identity) -> dict[str, str]:
    if who.forged:
        w.web.cookies.clear()
        csrf = login_csrf(w.web)
        forged = Signer("not-the-server-key", salt="clinann.session").sign("a-session-secret").decode()
        w.web.cookies.set(SESSION_COOKIE, forged)
        return {CSRF_HEADER: csrf}
    return w.credentials(who.caller, api=who.token)


def respelled(template: str, path: str) -> list[tuple[str, str]]:
    """(what was changed, path) for every path parameter of ``path`` in every spelling."""
    regex, _, convertors = compile_path(template)
    values = regex.match(path).groupdict()
    variants = []
    for name, value in values.items():
        for spelling in spellings(value):
            filled = template
            for other, other_value in values.items():
                filled = filled.replace("{" + other + "}", quote(spelling) if other == name else other_value)
            variants.append((f"{name}={spelling!r}", filled))
    return variants


def _send(w: World, method: str, path: str, ask: Ask, headers: dict[str, str], query=None, form=None):
    params = {**(ask.params or {}), **(query or {})}
    data = {**(ask.data or {}), **(form or {})} if (ask.data or form) and ask.json is None else None
    return w.web.request(method, path, params=params or None, data=data, json=ask.json, headers=headers)


REFUSED = {LOGIN, 401, 403, 404, 422}


def _refusal_problems(route: str, what: str, response, api: bool) -> list[str]:
    outcome = _outcome(response, api)
    problems = []
    if outcome not in REFUSED and response.status_code != 422:
        problems.append(f"{route} with {what}: {outcome}")
    if SECRET_TAG in response.text:
        problems.append(f"{route} with {what}: the answer shows a note of project A")
    return problems


def _refused_identities(route: tuple[str, str]) -> list[Identity]:
    expected = EXPECTED[MATRIX[route].group]
    return [who for who in IDENTITIES if expected[who.caller] != ALLOW]


@pytest.fixture
def world(web, sessions, runtime, clock, quick_hash) -> World:  # noqa: F811
    return build_world(web, sessions, runtime, clock, quick_hash)


def test_the_route_table_is_walked(web, capsys):
    """Every object-naming route of the live app is asked here (ROUTES comes from the route table)."""
    live = sorted(
        {
            (method, r.path)
            for r in _all_routes(web.app)
            if "{" in getattr(r, "path", "")
            for method in (getattr(r, "methods", None) or set()) & {"GET", "POST"}
        }
    )
    assert live == ROUTES and len(ROUTES) >= 50
    with capsys.disabled():
        print(
            f"\n{len(ROUTES)} object-naming routes x {len(IDENTITIES)} identities x 7 spellings per path id"
        )


@pytest.mark.parametrize("route", ROUTES, ids=" ".join)
def test_no_spelling_of_an_id_gets_past_the_check(world, route, capsys):
    """Every refused identity, every path id in every spelling: refused, nothing shown, nothing changed."""
    method, template = route
    api = template.startswith("/api/")
    ask = MATRIX[route].recipe(world)
    path = urlsplit(ask.path).path
    assert compile_path(template)[0].match(path), f"{route}: the recipe sends {path}"
    variants = respelled(template, path)
    problems, asked = [], 0
    for who in _refused_identities(route):
        headers = credentials(world, who)
        before = _table_contents(world.sessions) if method == "POST" else None
        for what, spelled in variants:
            response = _send(world, method, spelled, ask, headers)
            asked += 1
            problems += _refusal_problems(f"{method} {template} as {who.name}", what, response, api)
        if before is not None:
            after = _table_contents(world.sessions)
            changed = sorted(t for t in before.keys() | after.keys() if before.get(t) != after.get(t))
            if changed:
                problems.append(f"{method} {template} as {who.name}: refused spellings changed {changed}")
    with capsys.disabled():
        print(f"\n{method} {template}: {asked} requests ({len(variants)} spellings)", end="")
    assert problems == []
    assert asked == len(_refused_identities(route)) * len(variants) > 0


# ---- object ids in query strings and form fields ------------------------------------------------------

OBJECT_FIELDS = ("project_id", "document_id", "set_id", "run_id", "study_id", "export_id", "batch_id", "run")


def _ids_of_a(w: World) -> dict[str, str]:
    return {
        "project_id": str(w.project_a),
        "document_id": str(w.note),
        "set_id": str(w.physicians_set),
        "run_id": str(w.run),
        "study_id": str(w.study),
        "export_id": str(w.export),
        "batch_id": str(w.batch),
        "run": str(w.run),
    }


def project_a_rows(w: World) -> dict[str, str]:
    """A digest of every row of project A: the project, and every table's rows that carry its id."""
    from sqlalchemy import text

    with w.sessions() as db:
        tables = db.scalars(
            text(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND column_name = 'project_id' ORDER BY table_name"
            )
        ).all()
        digest = {
            table: db.scalar(
                text(
                    f"SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) FROM \"{table}\" r "
                    "WHERE project_id = :p"
                ),
                {"p": w.project_a},
            )
            for table in tables
        }
        digest["projects"] = db.scalar(
            text("SELECT md5(r::text) FROM projects r WHERE id = :p"), {"p": w.project_a}
        )
    return digest


def lead_routes_without_objects(app) -> list[tuple[str, str]]:
    """The lead's routes (pages and API) that name no object in their path: the create routes, the lists."""
    return sorted(
        {
            (method, r.path)
            for r in _all_routes(app)
            if r.path.startswith(("/lead", "/api/v1/lead")) and "{" not in r.path
            for method in (getattr(r, "methods", None) or set()) & {"GET", "POST"}
        }
    )


def test_ids_of_another_project_in_query_strings_and_forms_change_and_show_nothing(world):
    """Lead B names A's objects in the query string and the form of every lead route that names no object,
    and of every route of project B. Finding 2: ``POST /lead/projects?project_id=A`` updated A."""
    import json

    from app.demo.seed import MEDICATION_SCHEMA

    ids = _ids_of_a(world)
    token = world.credentials(Caller.lead_b, api=True)  # first: a login clears the client's cookies
    headers = world.credentials(Caller.lead_b, api=False)
    project_form = {
        "name": "Taken over by the page",
        "guidelines": "none",
        "label_schema": json.dumps(MEDICATION_SCHEMA),
        "study_settings": "{}",
    }
    bodies = {
        ("POST", "/lead/projects"): Ask("/lead/projects", data=project_form),
        ("POST", "/api/v1/lead/projects"): Ask(
            "/api/v1/lead/projects",
            json={"name": "Taken over by the API", "label_schema": MEDICATION_SCHEMA, **ids},
        ),
    }
    asks = [
        (route, bodies.get(route, Ask(route[1], data={} if route[0] == "POST" else None)))
        for route in lead_routes_without_objects(world.web.app)
    ]
    # Routes of B's project (only the project in the path), with A's ids beside it.
    for route in ROUTES:
        method, template = route
        if MATRIX[route].group.name == "project_a" and compile_path(template)[2].keys() == {"project_id"}:
            ask = MATRIX[route].recipe(world)
            asks.append(
                (
                    route,
                    Ask(
                        ask.path.replace(f"/{world.project_a}", f"/{world.project_b}", 1),
                        params=ask.params,
                        data=ask.data,
                        json=ask.json,
                    ),
                )
            )
    before = project_a_rows(world)
    problems = []
    for (method, template), ask in asks:
        api = template.startswith("/api/")
        form = ids if method == "POST" and ask.json is None else None
        response = _send(world, method, ask.path, ask, token if api else headers, query=ids, form=form)
        if response.status_code >= 500:
            problems.append(f"{method} {ask.path}: {response.status_code}")
        if SECRET_TAG in response.text:
            problems.append(f"{method} {ask.path} with A's ids: the answer shows a note of project A")
        after = project_a_rows(world)
        changed = sorted(t for t in before if before[t] != after[t])
        if changed:
            problems.append(f"{method} {ask.path} with A's ids changed project A's {changed}")
            before = after
    assert len(asks) >= 20
    assert problems == []
