"""The browser upload's choices (issue 18): extend the schema, skip notes whose text differs; what it
did is listed (same text as another note, skipped, schema additions) under a summary of counts."""

from sqlalchemy import select

from app.db.models import Document, Project
from app.services.projects import create_project
from tests.conftest import log_in, page, session_csrf
from tests.services.test_corpus_import import brat_zip

PAGE = "/admin/batches"
SCHEMA = {"entity_types": [{"name": "Drug", "color": "#1f77b4"}]}


def _zip(pairs: dict[str, tuple[str, str]]) -> bytes:
    return brat_zip({f"corpus/{stem}": pair for stem, pair in pairs.items()})


def _upload(web, project_id: int, content: bytes, **choices: str):
    return web.post(
        PAGE,
        data={"project_id": str(project_id), "layer": "pre:corpus", "csrf_token": session_csrf(web, PAGE)}
        | choices,
        files=[("files", ("corpus.zip", content, "application/zip"))],
    )


def test_the_upload_form_extends_the_schema_and_skips_mismatched_notes_when_ticked(web, accounts, sessions):
    project = create_project(sessions, "Corpus", SCHEMA)
    log_in(web, "admin")
    form = page(web.get(PAGE))
    for box in ("extend_schema", "skip_mismatched"):
        field = form.select_one(f"input[name={box}]")
        assert field["type"] == "checkbox" and form.select_one(f"label[for={field['id']}]") is not None
    assert _upload(web, project.id, _zip({"a": ("Aspirin.\n", "T1\tDrug 0 7\tAspirin\n")})).status_code == 200

    corpus = _zip(
        {
            "a": ("Aspirin daily.\n", "T1\tDrug 0 7\tAspirin\n"),  # a's name with another text
            "b": ("Rash.\n", "T1\tADE 0 4\tRash\n"),  # a label outside the schema
            "c": ("Rash.\n", "T1\tADE 0 4\tRash\n"),  # b's text under another name
        }
    )
    refused = page(_upload(web, project.id, corpus))
    problems = [li.get_text() for li in refused.select("[data-testid=upload-problems] li")]
    mismatch = (
        "corpus/a.txt, line 1: note 'a' is in the project with another text (they differ from line 1 on)"
    )
    assert mismatch in problems
    assert any(p.startswith("corpus/b.ann, line 1: label 'ADE' is not in the project") for p in problems)

    done = _upload(web, project.id, corpus, extend_schema="on", skip_mismatched="on")
    assert done.status_code == 200
    outcome = page(done)
    notices = [li.get_text() for li in outcome.select("[data-testid=upload-notices] li")]
    assert notices == [
        "c: same text as b (stored as a note of its own)",
        f"{mismatch} (skipped)",
        "schema: added entity type 'ADE' (used by the data)",
    ]
    summary = outcome.select_one("[data-testid=upload-summary]").get_text()
    assert summary.startswith("stored 2 notes;") and "1 skipped" in summary
    assert "1 schema additions" in summary
    with sessions() as db:
        assert sorted(db.scalars(select(Document.external_id))) == ["a", "b", "c"]
        assert db.scalar(select(Document.text).where(Document.external_id == "a")) == "Aspirin.\n"
        names = [e["name"] for e in db.get(Project, project.id).label_schema["entity_types"]]
    assert names == ["Drug", "ADE"]
