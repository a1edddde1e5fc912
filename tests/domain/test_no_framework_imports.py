"""app/domain is plain Python: it imports no web framework and no database layer."""

import ast
from pathlib import Path

import pytest

import app.domain

FORBIDDEN = (
    "fastapi",
    "starlette",
    "sqlalchemy",
    "psycopg",
    "alembic",
    "procrastinate",
    "jinja2",
    "httpx",
    "app.db",
    "app.web",
    "app.services",
)
DOMAIN_FILES = sorted(Path(app.domain.__file__).parent.rglob("*.py"))


@pytest.mark.parametrize("path", DOMAIN_FILES, ids=lambda p: p.name)
def test_domain_module_imports_no_framework(path):
    tree = ast.parse(path.read_text())
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.append(node.module)
    bad = [name for name in imported if name.startswith(FORBIDDEN)]
    assert not bad, f"{path.name} imports {bad}"


def test_there_are_domain_modules_to_check():
    assert len(DOMAIN_FILES) >= 4
