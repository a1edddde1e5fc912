"""The `clinann` command: help texts and account management against real PostgreSQL."""

import io
import subprocess
import sys

import pytest
from sqlalchemy import select

from app.cli import build_parser, main
from app.db.models import AuditEvent, Project, User


def test_every_command_has_help():
    result = subprocess.run([sys.executable, "-m", "app.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("serve", "worker", "demo", "db", "user", "project", "import", "export", "fake-llm"):
        assert command in result.stdout
    fake_llm = subprocess.run(
        [sys.executable, "-m", "app.cli", "fake-llm", "--help"], capture_output=True, text=True
    )
    assert fake_llm.returncode == 0 and "--missed" in fake_llm.stdout and "--gold" in fake_llm.stdout
    for argv in (["serve"], ["demo"], ["worker"], ["db", "upgrade"], ["user", "add"]):
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args([*argv, "--help"])
        assert exited.value.code == 0
    serve_help = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    for flag in ("--host", "--port", "--data-dir", "--no-worker"):
        assert flag in serve_help


def test_user_add_list_set_role_disable(sessions, settings, monkeypatch, capsys):
    monkeypatch.setenv("CLINANN_DATABASE_URL", settings.database_url)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-good-password\n"))
    assert main(["user", "add", "Dr.Who", "--role", "annotator", "--password-stdin"]) == 0
    assert main(["user", "set-role", "dr.who", "lead"]) == 0
    assert main(["user", "list"]) == 0
    assert "dr.who" in capsys.readouterr().out
    assert main(["user", "disable", "dr.who"]) == 0
    with sessions() as db:
        user = db.scalar(select(User).where(User.username == "dr.who"))
        actions = list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert user.role == "lead" and not user.is_active
    assert actions == ["user.create", "user.role_change", "user.disable"]


def test_user_add_refuses_bad_input_and_stores_nothing(sessions, settings, monkeypatch, capsys):
    monkeypatch.setenv("CLINANN_DATABASE_URL", settings.database_url)
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["user", "add", "dr.x", "--role", "lead", "--password-stdin"]) == 2
    assert "password: at least 12 characters" in capsys.readouterr().err
    assert main(["user", "set-role", "nobody", "lead"]) == 2
    with sessions() as db:
        assert db.scalar(select(User.id)) is None


def test_import_and_export_on_the_command_line(sessions, settings, monkeypatch, capsys, tmp_path):
    import json

    monkeypatch.setenv("CLINANN_DATABASE_URL", settings.database_url)
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"Aspirin 81 mg daily.\r\n")
    (folder / "a.ann").write_text(
        "T1\tDrug 0 7\tAspirin\nT2\tStrength 8 13\t81 mg\nR1\tStrength-Drug Arg1:T2 Arg2:T1\n"
    )
    (folder / "annotation.conf").write_text(
        "[entities]\nDrug\nStrength\n[relations]\nStrength-Drug Arg1:Strength, Arg2:Drug\n"
    )
    assert main(["import", str(folder), "--project", "Meds", "--create", "--as", "gold"]) == 0
    assert "'Meds' as gold: stored 1 notes" in capsys.readouterr().out
    out = tmp_path / "meds.jsonl"
    assert main(["export", str(out), "--project", "Meds", "--format", "jsonl", "--layer", "gold"]) == 0
    [document] = [json.loads(line) for line in out.read_text().splitlines()]
    assert document["text"] == "Aspirin 81 mg daily.\r\n"
    assert [(s["label"], s["fragments"]) for s in document["spans"]] == [
        ("Drug", [[0, 7]]),
        ("Strength", [[8, 13]]),
    ]
    assert document["relations"][0]["type"] == "Strength-Drug"
    (folder / "b.txt").write_bytes(b"\x00binary")
    assert main(["import", str(folder), "--project", "Meds", "--as", "gold"]) == 1
    assert "b.txt, line 1: contains a NUL byte" in capsys.readouterr().err
    assert main(["export", str(out), "--project", "Nope", "--format", "jsonl"]) == 2


def test_project_add_lead_and_leads(sessions, settings, monkeypatch, capsys, password_hashes):
    # A project made by `clinann import --create` has no lead: the command line gives it one.
    from app.db.models import Project, ProjectMember

    monkeypatch.setenv("CLINANN_DATABASE_URL", settings.database_url)
    with sessions.begin() as db:
        db.add(Project(name="Imported notes", label_schema={"entity_types": []}))
        for username, role in (("dr.lead", "lead"), ("dr.phys", "annotator")):
            db.add(
                User(
                    username=username, display_name=username, role=role, password_hash=password_hashes["lead"]
                )
            )
    assert main(["project", "add-lead", "Imported notes", "Dr.Lead"]) == 0
    assert "dr.lead now leads 'Imported notes'" in capsys.readouterr().out
    assert main(["project", "leads", "Imported notes"]) == 0
    assert capsys.readouterr().out.split()[:2] == ["dr.lead", "active"]

    # Refusals name what is wrong and store nothing.
    assert main(["project", "add-lead", "Imported notes", "dr.phys"]) == 2
    assert "'dr.phys' is not a lead (their role is annotator)" in capsys.readouterr().err
    assert main(["project", "add-lead", "No such project", "dr.lead"]) == 2
    assert "project: no project 'No such project'" in capsys.readouterr().err
    assert main(["project", "add-lead", "Imported notes", "dr.lead"]) == 2
    assert "already leads this project" in capsys.readouterr().err
    with sessions() as db:
        members = db.execute(
            select(User.username).join(ProjectMember, ProjectMember.user_id == User.id)
        ).all()
        audited = db.execute(select(AuditEvent.action, AuditEvent.user_id, AuditEvent.client_address)).all()
    assert members == [("dr.lead",)]
    assert audited == [("project.lead_add", None, "cli")]


def test_create_takes_a_corpus_as_it_is(sessions, settings, monkeypatch, capsys, tmp_path):
    """Issue 18: relation arguments the conf never declares, and data outside the conf, crashed with a
    traceback (LabelSchemaError); a folder of plain notes crashed too (no entity types)."""
    monkeypatch.setenv("CLINANN_DATABASE_URL", settings.database_url)
    corpus = tmp_path / "n2c2"
    corpus.mkdir()
    (corpus / "annotation.conf").write_text(
        "[entities]\nDrug\n[relations]\nReason-Drug\tArg1:Reason, Arg2:Drug\n[events]\n[attributes]\n"
    )
    (corpus / "a.txt").write_text("Aspirin for chest pain, rash.\n")
    (corpus / "a.ann").write_text(
        "T1\tDrug 0 7\tAspirin\nT2\tReason 12 22\tchest pain\nT3\tADE 24 28\trash\n"
        "R1\tReason-Drug Arg1:T2 Arg2:T1\n"
    )
    assert main(["import", str(corpus), "--project", "n2c2", "--create", "--as", "gold"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    undeclared = "not declared in annotation.conf: an argument of relation 'Reason-Drug'"
    assert f"note: schema: added entity type 'Reason' ({undeclared})" in captured.err
    assert "note: schema: added entity type 'ADE' (used by the data)" in captured.err
    assert "'n2c2' as gold: stored 1 notes;" in captured.out and "2 schema additions" in captured.out

    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("n1", "n2"):
        (plain / f"{name}.txt").write_text(f"Note {name}: fever.\n")
    assert main(["import", str(plain), "--project", "Plain notes", "--create"]) == 0
    assert "'Plain notes' as pre:imported: stored 2 notes" in capsys.readouterr().out
    with sessions() as db:
        schema = db.scalar(select(Project.label_schema).where(Project.name == "Plain notes"))
    assert schema["entity_types"] == []


def test_an_import_into_a_project_names_data_outside_its_schema_and_extends_it_when_asked(
    sessions, settings, monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("CLINANN_DATABASE_URL", settings.database_url)
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "annotation.conf").write_text("[entities]\nDrug\n")
    (folder / "a.txt").write_text("Aspirin daily.\n")
    (folder / "a.ann").write_text("T1\tDrug 0 7\tAspirin\n")
    assert main(["import", str(folder), "--project", "Meds", "--create"]) == 0
    (folder / "b.txt").write_text("Rash after aspirin.\n")
    (folder / "b.ann").write_text("T1\tADE 0 4\tRash\n")
    capsys.readouterr()
    assert main(["import", str(folder), "--project", "Meds"]) == 1
    err = capsys.readouterr().err
    assert "error: b.ann, line 1: label 'ADE' is not in the project's schema" in err
    assert main(["import", str(folder), "--project", "Meds", "--extend-schema"]) == 0
    captured = capsys.readouterr()
    assert "note: schema: added entity type 'ADE' (used by the data)" in captured.err
    assert "stored 1 notes" in captured.out and "1 already stored with nothing to add" in captured.out


def test_one_folder_per_annotator_on_the_command_line(sessions, settings, monkeypatch, capsys, tmp_path):
    import shutil

    from tests.domain.test_events import EVENTS

    monkeypatch.setenv("CLINANN_DATABASE_URL", settings.database_url)
    corpus = tmp_path / "bionlp"
    shutil.copytree(EVENTS, corpus)
    (corpus / "README.md").unlink()
    argv = ["import", str(corpus), "--project", "BioNLP", "--create", "--as", "annotator"]
    argv.append("--annotator-from-folder")
    assert main(argv) == 1
    assert "error: ann1/: no annotator account 'ann1'" in capsys.readouterr().err
    with sessions() as db:
        assert db.scalar(select(Project.id).where(Project.name == "BioNLP")) is None  # all or nothing
    assert main([*argv, "--create-annotators"]) == 0
    captured = capsys.readouterr()
    created = "note: account 'ann1' created for its folder, disabled until an admin sets its password"
    assert created in captured.err
    assert "'BioNLP' as annotator:(one per folder): stored 2 notes; 2 notes given a further layer" in (
        captured.out
    )
