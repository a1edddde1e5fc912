"""The lead's pre-annotation runs: start (LLM or lexicon), watch, cancel, re-run, read, evaluate, choose."""

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from app.db.models import Project
from app.domain.vocabulary import Role
from app.services import pre_annotation, run_reports
from app.services.llm_endpoints import list_endpoints
from app.web.deps import (
    CurrentIdentity,
    LeadDocumentId,
    LeadProjectId,
    LeadRunId,
    Sessions,
    client_address,
    project_or_404,
    require_role,
)
from app.web.forms import number_field
from app.web.templating import render

router = APIRouter(
    prefix="/lead",
    tags=["lead"],
    dependencies=[Depends(require_role(Role.lead, Role.admin))],
)


def _run(sessions, run_id: int) -> tuple[run_reports.RunSummary, int]:
    found = run_reports.run_summary(sessions, run_id)
    if found is None:
        raise HTTPException(status_code=404, detail="No such run.")
    return found


def _runs_page(request: Request, sessions, project: Project, *, values=None, error=None, status_code=200):
    from app.services.batches import batch_choices

    batches = batch_choices(sessions, project.id)  # neither held, rejected nor empty ones
    return render(
        request,
        "lead/runs.html",
        {
            "project": project,
            "runs": run_reports.list_runs(sessions, project.id),
            "endpoints": list_endpoints(sessions, active_only=True),
            "batches": batches,
            "gold_documents": run_reports.gold_documents(sessions, project.id),
            "values": values or {},
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/projects/{project_id}/runs")
def runs(request: Request, sessions: Sessions, project_id: LeadProjectId) -> Response:
    project = project_or_404(sessions, project_id)
    if request.headers.get("HX-Request"):
        return render(
            request,
            "lead/runs.html",
            {"project": project, "runs": run_reports.list_runs(sessions, project_id)},
            block_name="run_list",
        )
    return _runs_page(request, sessions, project)


def _number(form, field: str, kind, default):
    return number_field(form, field, kind, default, pre_annotation.RunError)


@router.post("/projects/{project_id}/runs")
async def start_run(
    request: Request, identity: CurrentIdentity, sessions: Sessions, project_id: LeadProjectId
) -> Response:
    project = project_or_404(sessions, project_id)
    form = await request.form()
    lexicon_file = form.get("lexicon")
    lexicon_csv, lexicon_source = None, "lexicon.csv"
    if hasattr(lexicon_file, "read"):
        content = await lexicon_file.read()
        lexicon_source = lexicon_file.filename or lexicon_source
        try:
            lexicon_csv = content.decode("utf-8") if content else None
        except UnicodeDecodeError:
            return _runs_page(
                request, sessions, project, values=dict(form), status_code=422,
                error=pre_annotation.RunError("lexicon", f"{lexicon_source} is not UTF-8 text"),
            )  # fmt: skip
    try:
        batch = _number(form, "batch_id", int, None)
        request_ = pre_annotation.RunRequest(
            name=str(form.get("name") or ""),
            method=str(form.get("method") or "llm"),
            prompt_schema=str(form.get("prompt_schema") or "ensemble"),
            endpoint_id=_number(form, "endpoint_id", int, None),
            chunk_size=_number(form, "chunk_size", int, None),
            few_shot=_number(form, "few_shot", int, 3),
            fuzzy_threshold=_number(form, "fuzzy_threshold", float, pre_annotation.FUZZY_THRESHOLD),
            batch_id=batch,
            lexicon_csv=lexicon_csv,
            lexicon_source=lexicon_source,
            whole_word=form.get("whole_word") is not None,
            case_sensitive=form.get("case_sensitive") is not None,
        )
        run_id = await run_in_threadpool(
            pre_annotation.start_run, sessions, project_id, request_, user_id=identity.user.id,
            client_address=client_address(request),
        )  # fmt: skip
    except pre_annotation.RunError as error:
        return _runs_page(request, sessions, project, values=dict(form), error=error, status_code=422)
    return RedirectResponse(f"/lead/runs/{run_id}", status_code=303)


@router.get("/projects/{project_id}/runs/compare")
def compare(request: Request, sessions: Sessions, project_id: LeadProjectId) -> Response:
    project = project_or_404(sessions, project_id)
    try:
        run_ids = [int(r) for r in request.query_params.getlist("run")]
    except ValueError:
        raise HTTPException(status_code=422, detail="run: must be run ids") from None
    batch = request.query_params.get("batch_id") or None
    try:
        batch_id = None if batch is None else int(batch)
    except ValueError:
        raise HTTPException(status_code=422, detail="batch_id: must be a batch id") from None
    try:
        document_ids = None  # or a development set: the notes of one batch
        if batch_id is not None:
            document_ids = run_reports.batch_documents(sessions, project_id, batch_id)
        evaluations = run_reports.evaluate_runs(sessions, project_id, run_ids, document_ids)
    except run_reports.NotOfProject as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    return render(
        request, "lead/run_compare.html", {"project": project, "evaluations": evaluations, "batch_id": batch}
    )


@router.get("/runs/{run_id}")
def run_page(request: Request, sessions: Sessions, run_id: LeadRunId) -> Response:
    """The run's page; htmx polls its ``live`` block (progress, actions, per-note table) while the run
    is queued or running, and the block it gets once the run has finished stops the polling."""
    run, project_id = _run(sessions, run_id)
    context = {"run": run, "project_id": project_id, "results": run_reports.note_results(sessions, run_id)}
    if not run.active:  # read once the run has finished: they would change under the lead's eyes
        evaluations = (
            run_reports.evaluate_runs(sessions, project_id, [run_id])
            if run.progress.counts.get("succeeded")
            else []
        )
        context["evaluation"] = evaluations[0] if evaluations else None
        context["listing"] = run_reports.dropped_and_fuzzy(sessions, run_id)
    if request.headers.get("HX-Request"):
        return render(request, "lead/run.html", context, block_name="live")
    return render(request, "lead/run.html", {**context, "project": project_or_404(sessions, project_id)})


@router.get("/runs/{run_id}/notes/{document_id}")
def note_prompts(
    request: Request, sessions: Sessions, run_id: LeadRunId, document_id: LeadDocumentId
) -> Response:
    run, project_id = _run(sessions, run_id)
    records = run_reports.chunk_records(sessions, run_id, document_id)
    return render(
        request,
        "lead/run_note.html",
        {"run": run, "project_id": project_id, "document_id": document_id, "records": records},
    )


def _act(sessions, run_id: int, action) -> Response:
    try:
        action()
    except pre_annotation.RunError as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    return RedirectResponse(f"/lead/runs/{run_id}", status_code=303)


@router.post("/runs/{run_id}/cancel")
def cancel(identity: CurrentIdentity, sessions: Sessions, run_id: LeadRunId) -> Response:
    _run(sessions, run_id)
    return _act(
        sessions, run_id, lambda: pre_annotation.cancel_run(sessions, run_id, user_id=identity.user.id)
    )


@router.post("/runs/{run_id}/rerun")
def rerun(identity: CurrentIdentity, sessions: Sessions, run_id: LeadRunId) -> Response:
    _run(sessions, run_id)
    return _act(
        sessions, run_id, lambda: pre_annotation.rerun_failed(sessions, run_id, user_id=identity.user.id)
    )


@router.post("/runs/{run_id}/study-base")
def study_base(identity: CurrentIdentity, sessions: Sessions, run_id: LeadRunId) -> Response:
    _run(sessions, run_id)
    return _act(
        sessions, run_id, lambda: pre_annotation.mark_study_base(sessions, run_id, user_id=identity.user.id)
    )
