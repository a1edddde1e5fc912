"""Uploads that must be refused whole, naming file and line, with nothing stored (issue 17, finding 7)."""

import io
import stat
import zipfile

import pytest
from sqlalchemy import func, select

from app.db.models import Batch, Document
from app.demo.seed import MEDICATION_SCHEMA
from app.services.projects import create_project
from tests.web.test_api_batches import _token


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return out.getvalue()


def _symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the mode below is read
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def _fifo(name: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    return info, b""


DEEP = "[" * 10_000 + "]" * 10_000
CASES = {
    "JSONL nested 10,000 deep": (
        "deep.jsonl",
        (
            '{"id": "a", "text": "Aspirin."}\n{"id": "b", "text": "x", "metadata": {"x": ' + DEEP + "}}\n"
        ).encode(),
        ("deep.jsonl", 2, "nested more than 64 levels deep"),
    ),
    "a NUL in a JSONL string": (
        "nul.jsonl",
        b'{"id": "a", "text": "Aspirin."}\n{"id": "b", "text": "bad \\u0000 text"}\n',
        ("nul.jsonl", 2, "NUL"),
    ),
    "a symbolic link in a zip": (
        "notes.zip",
        _zip([("ok.txt", b"Aspirin 81 mg."), _symlink("passwd.txt", "/etc/passwd")]),
        ("notes.zip:passwd.txt", None, "a symbolic link is not a note file"),
    ),
    "a FIFO in a zip": (
        "notes.zip",
        _zip([("ok.txt", b"Aspirin 81 mg."), _fifo("pipe.txt")]),
        ("notes.zip:pipe.txt", None, "a device, FIFO or socket"),
    ),
    "a zip inside the zip": (
        "notes.zip",
        _zip([("ok.txt", b"Aspirin 81 mg."), ("inner.zip", _zip([("n.txt", b"Metformin.")]))]),
        ("notes.zip:inner.zip", None, "an archive inside the archive is refused"),
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_refused_upload_names_file_and_line_and_stores_nothing(web, accounts, sessions, case):
    name, content, (file, line, words) = CASES[case]
    project = create_project(sessions, "Uploads", MEDICATION_SCHEMA)
    admin = {"Authorization": f"Bearer {_token(web, 'admin')}"}
    refused = web.post(
        "/api/v1/admin/batches",
        headers=admin,
        data={"project_id": str(project.id)},
        files=[("files", (name, content, "application/octet-stream"))],
    )
    assert refused.status_code == 422, refused.text
    problems = refused.json()["problems"]
    where = f"{file}, line {line}: " if line else f"{file}: "
    assert any(p.startswith(where) and words in p for p in problems), problems
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(Batch)) == 0
        assert db.scalar(select(func.count()).select_from(Document)) == 0
