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


def test_a_zip_of_annotator_folders_with_its_conf_goes_in_as_each_annotators_set(web, accounts, sessions):
    """The browser reads the zip's annotation.conf (its additions listed, added only when confirmed by
    ticking Extend the schema) and one folder per annotator, as the command line does."""
    import io
    import zipfile

    from tests.domain.test_events import EVENTS

    project = create_project(sessions, "Events", SCHEMA)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(EVENTS.rglob("*")):
            if path.is_file() and path.name != "README.md":
                archive.write(path, f"bionlp/{path.relative_to(EVENTS)}")
    log_in(web, "admin")
    form = {"project_id": str(project.id), "annotator_from_folder": "on", "create_annotators": "on"}

    def send(**more):
        return web.post(PAGE, data={**form, **more, "csrf_token": session_csrf(web, PAGE)},
                        files=[("files", ("bionlp.zip", out.getvalue(), "application/zip"))])  # fmt: skip

    refused = page(send())
    problems = [li.get_text() for li in refused.select("[data-testid=upload-problems] li")]
    assert any("label 'Protein' is not in the project's schema" in p for p in problems), problems
    with sessions() as db:
        assert db.scalar(select(Document.id)) is None

    done = page(send(extend_schema="on"))
    notices = [li.get_text() for li in done.select("[data-testid=upload-notices] li")]
    assert "schema: added entity type 'Protein' (declared in annotation.conf)" in notices
    assert "schema: added entity type 'Phosphorylation' (declared in annotation.conf)" in notices  # a trigger
    assert "account 'ann2' created for its folder, disabled until an admin sets its password" in notices
    with sessions() as db:
        assert sorted(db.scalars(select(Document.external_id))) == ["n1", "n2"]


def test_imported_events_are_shown_read_only_in_the_editor(web, accounts, sessions, runtime):
    """Events cannot be edited in the browser (issue 18 leaves that out), but the side list shows them,
    and says which argument a deleted span was."""
    from sqlalchemy import delete

    from app.db.models import AnnotationSet, Assignment, Span
    from app.services.batches import upload_batch
    from tests.domain.test_events import EVENTS

    project = create_project(sessions, "Events", {"entity_types": []})
    files = [(f"ann1/{p.name}", p.read_bytes()) for p in sorted((EVENTS / "ann1").iterdir())]
    outcome = upload_batch(sessions, runtime.settings, project.id, files, actor_id=None,
                           layer="annotator:annotator", extend_schema=True)  # fmt: skip
    assert outcome.status == "accepted", outcome.problems
    with sessions.begin() as db:
        document_id, set_id = db.execute(
            select(Document.id, AnnotationSet.id)
            .join(AnnotationSet, AnnotationSet.document_id == Document.id)
            .where(Document.external_id == "n1")
        ).one()
        physician = accounts["annotator"].id
        db.add(Assignment(project_id=project.id, document_id=document_id, annotator_id=physician,
                          condition="scratch", queue_position=0, annotation_set_id=set_id))  # fmt: skip
    log_in(web, "annotator")
    response = web.get(f"/annotate/sets/{set_id}")
    assert response.status_code == 200
    editor = page(response)
    events = [" ".join(li.get_text().split()) for li in editor.select("[data-testid=event]")]
    assert events == [
        "Phosphorylation phosphorylation · Theme: TRAF2",
        "Negative_regulation inhibits · Cause: Aspirin · Theme: Phosphorylation E1",
        "Binding binding · Theme: TRAF3",
    ]
    with sessions.begin() as db:  # the Theme of the Phosphorylation, deleted (as the editor would)
        db.execute(delete(Span).where(Span.annotation_set_id == set_id, Span.uid == "T4"))
    editor = page(web.get(f"/annotate/sets/{set_id}"))
    first = " ".join(editor.select_one("[data-testid=event]").get_text().split())
    assert first == "Phosphorylation phosphorylation · Theme: T4 (deleted)"


def test_the_report_shows_event_agreement(web, accounts, sessions, runtime):
    from app.services.batches import upload_batch
    from tests.conftest import make_lead_of
    from tests.domain.test_events import EVENTS

    project = create_project(sessions, "Events", {"entity_types": []})
    files = [(str(p.relative_to(EVENTS)), p.read_bytes()) for p in sorted(EVENTS.rglob("*.*")) if p.is_file()]
    outcome = upload_batch(sessions, runtime.settings, project.id, files, actor_id=None, extend_schema=True,
                           annotator_from_folder=True, create_annotators=True)  # fmt: skip
    assert outcome.status == "accepted", outcome.problems
    make_lead_of(sessions, project.id)
    log_in(web, "lead")
    report = page(web.get(f"/lead/projects/{project.id}/report"))
    row = report.select_one("[data-testid=agreement-events] tr[data-pair='ann1|ann2']")
    figures = {td["data-figure"]: td.get_text(" ", strip=True) for td in row.select("td[data-figure]")}
    assert figures["event_f1_strict"].startswith("0.40")
    assert figures["event_f1_lenient"].startswith("0.80")
    assert figures["event_relation_f1"].startswith("0.50")
    csv = web.get(f"/lead/projects/{project.id}/dashboard.csv?section=agreement").text
    assert "event_f1_strict" in csv and "event_relation_f1_strict" in csv


def test_a_project_made_from_plain_notes_says_it_has_no_labels_yet(web, accounts, sessions, runtime):
    from app.db.models import AnnotationSet, Assignment
    from app.services.batches import upload_batch

    outcome = upload_batch(sessions, runtime.settings, None, [("n1.txt", b"Fever since Monday.\n")],
                           actor_id=None, new_project=("Plain", {"entity_types": []}))  # fmt: skip
    assert outcome.status == "accepted"
    with sessions.begin() as db:
        project_id, document_id = db.execute(select(Document.project_id, Document.id)).one()
        physician = accounts["annotator"].id
        work = AnnotationSet(document_id=document_id, origin="annotator", annotator_id=physician)
        db.add(work)
        db.flush()
        db.add(Assignment(project_id=project_id, document_id=document_id, annotator_id=physician,
                          condition="scratch", queue_position=0, annotation_set_id=work.id))  # fmt: skip
    log_in(web, "annotator")
    editor = page(web.get(f"/annotate/sets/{work.id}"))
    assert "no labels yet" in editor.select_one("[data-testid=no-labels]").get_text()
