"""The guard create_app runs over the route table: a lead route that takes an object id past the project
check stops the app from starting, so a new route cannot forget the check (issue 17)."""

import pytest
from fastapi import APIRouter, FastAPI

from app.web.app import create_app, every_route
from app.web.deps import LeadBatchFilter, LeadProjectId, LeadRunId, guard_lead_routes, lead_route_problems


def _app(*routers: APIRouter) -> FastAPI:
    app = FastAPI()
    for router in routers:
        app.include_router(router)
    return app


def test_the_app_as_built_has_no_lead_route_past_the_check():
    assert lead_route_problems(every_route(create_app(None))) == []


def test_a_path_id_taken_as_a_plain_int_is_refused():
    router = APIRouter(prefix="/lead")

    @router.get("/projects/{project_id}/forgotten")
    def forgotten(project_id: int) -> dict:
        return {}

    problems = lead_route_problems(every_route(_app(router)))
    assert problems == [
        "['GET'] /lead/projects/{project_id}/forgotten: path parameter project_id is not taken through "
        "a Lead...Id type"
    ]
    with pytest.raises(RuntimeError, match="bypass the project check"):
        guard_lead_routes(every_route(_app(router)))


def test_an_object_id_read_from_the_query_string_is_refused():
    """Finding 2's shape: a create route that also takes ``project_id`` from its query string."""
    router = APIRouter(prefix="/lead")

    @router.post("/projects")
    def create(project_id: int | None = None) -> dict:
        return {}

    assert lead_route_problems(every_route(_app(router))) == [
        "['POST'] /lead/projects: reads project_id outside the path check (query, form or body)"
    ]


def test_a_user_named_without_an_authorised_project_is_refused():
    router = APIRouter(prefix="/api/v1/lead")

    @router.post("/users/{user_id}/remove")
    def remove(user_id: int) -> dict:
        return {}

    assert lead_route_problems(every_route(_app(router))) == [
        "['POST'] /api/v1/lead/users/{user_id}/remove: names a user without an authorised project_id"
    ]


def test_ids_through_the_types_pass_and_other_routers_are_not_judged():
    lead = APIRouter(prefix="/lead")

    @lead.get("/projects/{project_id}/runs/{run_id}")
    def run(project_id: LeadProjectId, run_id: LeadRunId, batch_id: LeadBatchFilter) -> dict:
        return {}

    admin = APIRouter(prefix="/admin")

    @admin.get("/batches/{batch_id}")
    def batch(batch_id: int) -> dict:  # admins see every project: no project check to forget
        return {}

    assert lead_route_problems(every_route(_app(lead, admin))) == []
