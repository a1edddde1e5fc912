"""One folder per annotator in one upload (issue 18): each folder that annotator's set of the note, their
agreement measured, events included, and checked against a computation of its own."""

import shutil
from pathlib import Path

from sqlalchemy import func, select

from app.db.models import AnnotationSet, AuditEvent, Document, User
from app.domain.brat import parse_annotation_conf
from app.domain.brat_import import read_brat_document
from app.domain.corpus_schema import schema_for_corpus
from app.domain.uploads import read_upload
from app.services.batches import limits_of, upload_batch
from app.services.metrics import project_metrics
from app.services.projects import create_project
from tests.domain.test_events import EVENTS, _independent_strict_keys

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _files(folder: Path) -> list[tuple[str, bytes]]:
    return [(str(p.relative_to(folder)), p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]


def _project(sessions, runtime, files, name="events"):
    contents = read_upload(files, limits_of(runtime.settings), read_brat_document)
    schema, _ = schema_for_corpus(parse_annotation_conf(contents.annotation_conf), contents.documents)
    return create_project(sessions, name, schema)


def test_folders_without_accounts_are_refused_whole_or_create_disabled_accounts(sessions, runtime):
    files = _files(EVENTS)
    project = _project(sessions, runtime, files)
    refused = upload_batch(
        sessions, runtime.settings, project.id, files, actor_id=None, annotator_from_folder=True
    )
    assert refused.status == "refused"
    assert sorted(str(p) for p in refused.problems) == [
        "ann1/: no annotator account 'ann1' (add the account first, or import with the option to create "
        "annotators)",
        "ann2/: no annotator account 'ann2' (add the account first, or import with the option to create "
        "annotators)",
    ]
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(User).where(User.username.like("ann%"))) == 0

    done = upload_batch(sessions, runtime.settings, project.id, files, actor_id=None,
                        annotator_from_folder=True, create_annotators=True)  # fmt: skip
    assert (done.status, done.stored, done.layers_added, done.accounts_created) == (
        "accepted", 2, ["n1", "n2"], ["ann1", "ann2"]
    )  # fmt: skip
    with sessions() as db:
        accounts = {u.username: u for u in db.scalars(select(User).where(User.username.like("ann%")))}
        sets = db.execute(
            select(Document.external_id, AnnotationSet.source_name)
            .join(AnnotationSet, AnnotationSet.document_id == Document.id)
            .order_by(Document.external_id, AnnotationSet.source_name)
        ).all()
        created = db.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "user.create")
        )
    assert all(not u.is_active and u.must_change_password for u in accounts.values())
    assert [tuple(s) for s in sets] == [
        ("n1", "annotator:ann1"), ("n1", "annotator:ann2"), ("n2", "annotator:ann1"), ("n2", "annotator:ann2")
    ]  # fmt: skip
    assert created == 2


def test_two_annotators_events_are_measured_as_an_independent_count_says(sessions, runtime):
    files = _files(EVENTS)
    project = _project(sessions, runtime, files)
    outcome = upload_batch(sessions, runtime.settings, project.id, files, actor_id=None,
                           annotator_from_folder=True, create_annotators=True)  # fmt: skip
    assert outcome.status == "accepted"
    report = project_metrics(sessions, project.id, agreement_resamples=50, time_resamples=50)
    [pair] = report["agreement"]["pairs"]
    assert pair["annotators"] == ["ann1", "ann2"] and pair["documents"] == 2

    matched = size_a = size_b = relations_matched = relations_a = relations_b = 0
    for note in ("n1", "n2"):
        keys_a, relations_one = _independent_strict_keys((EVENTS / "ann1" / f"{note}.ann").read_text())
        keys_b, relations_two = _independent_strict_keys((EVENTS / "ann2" / f"{note}.ann").read_text())
        matched += sum((keys_a & keys_b).values())
        size_a, size_b = size_a + sum(keys_a.values()), size_b + sum(keys_b.values())
        relations_matched += sum((relations_one & relations_two).values())
        relations_a += sum(relations_one.values())
        relations_b += sum(relations_two.values())
    strict = pair["event_f1"]["strict"]["overall"]
    assert strict["value"] == 2 * matched / (size_a + size_b) == 0.4
    assert pair["event_f1"]["lenient"]["overall"]["value"] == 0.8  # 4 of 5 + 5, by hand (fixture README)
    assert (
        pair["event_relation_f1"]["strict"]["overall"]["value"]
        == (2 * relations_matched / (relations_a + relations_b))
        == 0.5
    )
    assert report["agreement"]["event_types"] == [
        "Binding", "Gene_expression", "Negative_regulation", "Phosphorylation", "Positive_regulation"
    ]  # fmt: skip
    assert pair["event_attribute_kappa"]["Negation"]["matched_spans"] == 1  # on the one Binding both made


def test_one_annotators_folder_alone_is_still_that_annotators(sessions, runtime, tmp_path):
    folder = tmp_path / "corpus"
    shutil.copytree(EVENTS / "ann2", folder / "ann2")
    shutil.copy(EVENTS / "annotation.conf", folder / "annotation.conf")
    files = _files(folder)
    project = _project(sessions, runtime, files, "one folder")
    outcome = upload_batch(sessions, runtime.settings, project.id, files, actor_id=None,
                           annotator_from_folder=True, create_annotators=True)  # fmt: skip
    assert (outcome.status, outcome.stored, outcome.accounts_created) == ("accepted", 2, ["ann2"])
