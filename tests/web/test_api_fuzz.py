"""Schemathesis against the OpenAPI schema of /api/v1: generated requests, valid and not, never get a
server error (5xx), for every operation, with each role's bearer token."""

import schemathesis
from hypothesis import HealthCheck, given, settings

from app.services.auth import create_api_token


def _role(path: str) -> str:
    for prefix, role in (("/api/v1/admin", "admin"), ("/api/v1/annotate", "annotator")):
        if path.startswith(prefix):
            return role
    return "lead"


def test_no_generated_request_gets_a_server_error(web, sessions, accounts):
    tokens = {role: create_api_token(sessions, user.id, "fuzz")[1] for role, user in accounts.items()}
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", web.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15  # the whole API, not an empty schema
    failures = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call(headers={"Authorization": f"Bearer {tokens[_role(case.path)]}"})
            if response.status_code >= 500:
                failures.append((case.method, case.formatted_path, response.status_code, response.text[:200]))

        check()
    assert failures == []


def test_an_id_beyond_the_databases_range_is_a_bad_request_not_a_server_error(web, accounts, sessions):
    """What the fuzzing found: PostgreSQL's integer ids end at 2**31 - 1."""
    from tests.conftest import PASSWORDS, log_in

    secret = create_api_token(sessions, accounts["lead"].id, "range")[1]
    response = web.get(
        "/api/v1/lead/projects/99999999999/metrics", headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 422 and "out of range" in response.json()["detail"]
    log_in(web, "lead", PASSWORDS["lead"])
    assert web.get("/lead/augmentation/99999999999").status_code == 422
    assert web.get("/lead/augmentation/2147483647").status_code == 404  # the largest id: just not there
