"""The admin's LLM endpoints and the lead's run pages, over HTTP with a real fake LLM on loopback."""

import asyncio

import pytest
from nervaluate import Evaluator
from sqlalchemy import func, select

from app.db.models import AuditEvent, Document, LlmEndpoint, PreAnnotationRun, Project
from app.demo.seed import DEMO_PROJECT, seed_demo
from app.llm.fake_server import FakeBehaviour, FakeLlmServer
from app.services import pre_annotation, run_reports
from tests.conftest import log_in, page, session_csrf
from tests.services.test_pre_annotation import demo_schema, endpoint, gold_notes, stored_pre_labels


@pytest.fixture
def demo(sessions, accounts):
    seed_demo(sessions)
    with sessions() as db:
        return db.scalar(select(Project.id).where(Project.name == DEMO_PROJECT))


def _post(web, path, csrf_page, **fields):
    return web.post(path, data={"csrf_token": session_csrf(web, csrf_page), **fields})


def test_admin_adds_an_endpoint_the_key_stays_a_variable_name_and_it_is_audited(web, sessions, accounts):
    log_in(web, "admin")
    response = _post(
        web, "/admin/endpoints", "/admin/endpoints",
        name="local vLLM", base_url="http://127.0.0.1:8001/v1/", model="llama-3-8b",
        api_key_env="CLINANN_LLM_KEY_TEST", max_concurrency="16", timeout_seconds="30",
        structured_output="on", is_active="on",
    )  # fmt: skip
    assert response.status_code == 303
    with sessions() as db:
        stored = db.scalar(select(LlmEndpoint))
        audit = db.scalar(select(AuditEvent).where(AuditEvent.action == "llm_endpoint.created"))
    assert (stored.base_url, stored.model, stored.api_key_env) == ("http://127.0.0.1:8001/v1", "llama-3-8b",
                                                                 "CLINANN_LLM_KEY_TEST")  # fmt: skip
    assert stored.parameters["max_concurrency"] == 16 and stored.parameters["structured_output"] is True
    assert audit is not None and audit.details["model"] == "llama-3-8b"
    rows = page(web.get("/admin/endpoints")).select("[data-testid=endpoint-row]")
    assert len(rows) == 1 and "CLINANN_LLM_KEY_TEST" in rows[0].get_text()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"base_url": "ftp://host/v1"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
        ({"model": ""}, "model"),
        ({"api_key_env": "sk-live-abc123 with spaces"}, "api_key_env"),
        # Any other variable would be sent as the bearer token: the secret key, the database URL (issue 17)
        ({"api_key_env": "CLINANN_SECRET_KEY"}, "api_key_env"),
        ({"api_key_env": "CLINANN_DATABASE_URL"}, "api_key_env"),
        ({"api_key_env": "OPENAI_API_KEY"}, "api_key_env"),
        ({"max_concurrency": "0"}, "max_concurrency"),
        ({"max_concurrency": "many"}, "max_concurrency"),
        ({"timeout_seconds": "-1"}, "timeout_seconds"),
    ],
)
def test_a_bad_endpoint_names_the_field_and_stores_nothing(web, sessions, accounts, fields, field):
    log_in(web, "admin")
    good = {"name": "x", "base_url": "http://127.0.0.1:1/v1", "model": "m"}
    response = _post(web, "/admin/endpoints", "/admin/endpoints", **{**good, **fields})
    assert response.status_code == 422
    error = page(response).select_one("[data-testid=form-error]")
    assert error["data-field"] == field
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(LlmEndpoint)) == 0


def test_test_connection_reports_what_the_server_said(web, sessions, accounts, demo):
    log_in(web, "admin")
    notes, _, _ = gold_notes(sessions, demo)
    with FakeLlmServer(notes[:1], demo_schema(sessions, demo), FakeBehaviour()) as fake:
        working = endpoint(sessions, fake.base_url)
        response = _post(web, f"/admin/endpoints/{working}/test", "/admin/endpoints")
        result = page(response).select_one("[data-testid=connection-result]")
        assert result["data-worked"] == "yes"
        assert fake.request_count == 1
    with sessions.begin() as db:
        db.get(LlmEndpoint, working).base_url = "http://127.0.0.1:9/v1"  # nothing listens on port 9
        db.get(LlmEndpoint, working).parameters = {"max_attempts": 1, "timeout_seconds": 2}
    response = _post(web, f"/admin/endpoints/{working}/test", "/admin/endpoints")
    assert page(response).select_one("[data-testid=connection-result]")["data-worked"] == "no"


def test_annotators_and_leads_are_kept_out_where_they_do_not_belong(web, sessions, accounts, demo):
    log_in(web, "annotator")
    for path in ["/admin/endpoints", f"/lead/projects/{demo}/runs", "/api/v1/lead/projects/1/runs"]:
        assert web.get(path).status_code == 403, path
    web.cookies.clear()
    log_in(web, "lead")
    assert web.get("/admin/endpoints").status_code == 403
    assert web.get(f"/lead/projects/{demo}/runs").status_code == 200


def _run_inline(sessions, run_id):
    """Work the run's notes in this process, as the worker would."""
    with sessions() as db:
        project_id = db.get(PreAnnotationRun, run_id).project_id
        ids = list(db.scalars(select(Document.id).where(Document.project_id == project_id)))
    for document_id in ids:
        asyncio.run(pre_annotation.pre_annotate_note(sessions, run_id, document_id))


def test_the_lead_starts_a_run_and_the_evaluation_page_agrees_with_nervaluate(
    web, sessions, accounts, demo, monkeypatch
):
    notes, gold, _ = gold_notes(sessions, demo)
    behaviour = FakeBehaviour(missed=0.25, spurious=0.03, jitter=0.1, wrong_label=0.1, seed=11)
    with FakeLlmServer(notes, demo_schema(sessions, demo), behaviour) as fake:
        endpoint_id = endpoint(sessions, fake.base_url)
        log_in(web, "lead")
        runs_page = f"/lead/projects/{demo}/runs"
        form = page(web.get(runs_page)).select_one("[data-testid=run-form]")
        assert form is not None
        deferred = []
        # The test works the notes itself, so the job queue gets nothing.
        monkeypatch.setattr(
            pre_annotation, "queue_documents", lambda run_id, ids, defer=None: deferred.extend(ids)
        )
        fields = {"name": "noisy", "method": "llm", "endpoint_id": str(endpoint_id),
                  "prompt_schema": "direct_chunk", "few_shot": "1"}  # fmt: skip
        response = web.post(runs_page, data={"csrf_token": session_csrf(web, runs_page), **fields})
        assert response.status_code == 303
        run_id = int(response.headers["location"].rsplit("/", 1)[1])
        assert len(deferred) == len(notes)
        _run_inline(sessions, run_id)

    html = page(web.get(f"/lead/runs/{run_id}"))
    assert html.select_one("[data-testid=run-progress]")["data-status"] == "succeeded"
    micro = html.select_one("[data-testid=evaluation-strict] tr[data-label='(micro)']")
    shown = {cell["data-figure"]: float(cell.get_text()) for cell in micro.select("td[data-figure]")}

    # nervaluate on the same spans. Its end is inclusive, and its strict pass is greedy: response spans
    # with an exact partner go first so that a near miss cannot take a span from its exact partner.
    stored = stored_pre_labels(sessions, run_id)

    def as_dicts(spans, exact):
        ordered = sorted(spans, key=lambda span: (span not in exact, span))
        return [{"label": label, "start": s, "end": e - 1} for label, s, e in ordered]

    true = [as_dicts(gold[d], gold[d]) for d in sorted(gold)]
    pred = [as_dicts(stored.get(d, set()), gold[d]) for d in sorted(gold)]
    labels = sorted({label for spans in gold.values() for label, _, _ in spans})
    strict = Evaluator(true, pred, tags=labels, loader="dict").evaluate()["overall"]["strict"]
    p, r = strict.precision, strict.recall
    assert shown["precision"] == pytest.approx(p, abs=5e-4)
    assert shown["recall"] == pytest.approx(r, abs=5e-4)
    assert shown["f1"] == pytest.approx(strict.f1, abs=5e-4)
    assert shown["f2"] == pytest.approx(5 * p * r / (4 * p + r), abs=5e-4)
    assert 0.3 < r < 0.9

    # The exact prompt of a chunk is one click away, and the runs compare side by side.
    link = html.select_one("[data-testid=note-result] a")["href"]
    prompts = page(web.get(link))
    system = prompts.select_one("[data-testid=prompt-system]").get_text()
    assert "list the entities" in system
    assert prompts.select("[data-testid=raw-output]")
    compare = page(web.get(f"/lead/projects/{demo}/runs/compare?run={run_id}"))
    assert compare.select_one(f"[data-testid=comparison-row][data-run-id='{run_id}']") is not None
    # On a development set: only the notes of the chosen batch count.
    with sessions() as db:
        batch_id = db.scalar(select(Document.batch_id).where(Document.project_id == demo))
    batch_compare = web.get(f"/lead/projects/{demo}/runs/compare?run={run_id}&batch_id={batch_id}")
    assert f"of batch {batch_id}" in page(batch_compare).select_one("p.muted").get_text()
    subset = sorted(gold)[:3]
    assert run_reports.evaluate_runs(sessions, demo, [run_id], subset)[0].documents == 3
    assert web.get(f"/lead/projects/{demo}/runs/compare?run={run_id}&batch_id=x").status_code == 422
    # The page polls one fragment of itself (progress, actions, notes), not the page.
    fragment = web.get(f"/lead/runs/{run_id}", headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith('<div id="run-live"') and "run-progress" in fragment.text
    assert "note-results" in fragment.text and "run-configuration" not in fragment.text

    csrf = session_csrf(web, f"/lead/runs/{run_id}")
    assert web.post(f"/lead/runs/{run_id}/study-base", data={"csrf_token": csrf}).status_code == 303
    assert page(web.get(f"/lead/runs/{run_id}")).select_one("[data-testid=is-study-base]") is not None
    api = web.get(f"/api/v1/lead/runs/{run_id}").json()
    assert api["status"] == "succeeded" and api["is_study_base"] is True and api["finished"] == len(notes)


def test_a_bad_run_form_names_the_field(web, sessions, accounts, demo):
    log_in(web, "lead")
    runs_page = f"/lead/projects/{demo}/runs"
    response = web.post(runs_page, data={"csrf_token": session_csrf(web, runs_page), "name": "x",
                                         "method": "llm", "prompt_schema": "ensemble"})  # fmt: skip
    assert response.status_code == 422
    assert page(response).select_one("[data-testid=form-error]")["data-field"] == "endpoint"
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(PreAnnotationRun).where(
            PreAnnotationRun.method == "llm")) == 0  # fmt: skip


def test_an_endpoint_stored_with_another_variable_sends_no_key(sessions, monkeypatch):
    """An endpoint stored before the prefix rule (or written into the database) cannot leak a secret."""
    from app.services.llm_endpoints import client_config, list_endpoints

    monkeypatch.setenv("CLINANN_SECRET_KEY", "the-server-secret")
    monkeypatch.setenv("CLINANN_LLM_KEY_VLLM", "the-llm-key")
    with sessions.begin() as db:
        for name, env in (("leaky", "CLINANN_SECRET_KEY"), ("proper", "CLINANN_LLM_KEY_VLLM")):
            db.add(LlmEndpoint(name=name, base_url="http://127.0.0.1:9/v1", model="m", api_key_env=env))
    shown = {e.name: e for e in list_endpoints(sessions)}
    assert client_config(shown["leaky"]).api_key is None and not shown["leaky"].key_is_set
    assert client_config(shown["proper"]).api_key == "the-llm-key" and shown["proper"].key_is_set


def test_the_run_form_ticks_its_defaults_and_keeps_what_was_posted(web, sessions, demo):
    """Issue 20: every field of the run form through the field macros; a refused form comes back as
    it was sent (an unticked box stays unticked), with the error beside its field."""
    log_in(web, "lead")
    form = page(web.get(f"/lead/projects/{demo}/runs")).select_one("[data-testid=run-form]")
    ticked = {box["id"] for box in form.select("input[type=checkbox][checked]")}
    assert ticked == {"run-whole"}
    for control in form.select("input:not([type=hidden]), select"):
        assert control.find_parent(class_="field").select_one(f"label[for={control['id']}]"), control["id"]
    refused = _post(
        web, f"/lead/projects/{demo}/runs", f"/lead/projects/{demo}/runs",
        name="x", method="llm", prompt_schema="guess", fuzzy_threshold="70", case_sensitive="on",
    )  # fmt: skip
    assert refused.status_code == 422
    form = page(refused).select_one("[data-testid=run-form]")
    assert {box["id"] for box in form.select("input[type=checkbox][checked]")} == {"run-case"}
    assert form.select_one("#run-fuzzy")["value"] == "70"
    schema = form.select_one("#run-schema")
    assert schema["aria-invalid"] == "true"
    beside = schema.find_parent(class_="field").select_one("[data-testid=field-error]").text
    assert beside == "must be one of iob_token, direct_chunk, ensemble"
