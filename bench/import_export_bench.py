"""Import, export and PHI-screen benchmark on all of Chia (2,000 notes, ~49k spans, ~19k relations).

Targets (issue 4): import <= 30 s; export <= 15 s; PHI screen >= 10,000 notes of 5 KB per minute
(bench/phi_bench.py measures the screen alone in detail).

    .venv/bin/python bench/import_export_bench.py
"""

import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from app.db.models import Relation, Span  # noqa: E402
from app.domain.brat import parse_annotation_conf  # noqa: E402
from app.domain.brat_import import read_brat_document  # noqa: E402
from app.domain.corpus_schema import schema_for_corpus  # noqa: E402
from app.domain.uploads import read_upload  # noqa: E402
from app.runtime import open_runtime  # noqa: E402
from app.services.batches import limits_of, release_batch, upload_batch  # noqa: E402
from app.services.exports import export_project  # noqa: E402
from app.settings import Settings  # noqa: E402

CHIA = ROOT / "tests" / "fixtures" / "chia" / "chia_with_scope"


def main() -> None:
    runtime = open_runtime(Settings(data_dir=Path(tempfile.mkdtemp(prefix="clinann-bench-")), secret_key="b"))
    try:
        files = [(p.name, p.read_bytes()) for p in sorted(CHIA.iterdir()) if p.is_file()]
        started = time.perf_counter()
        # As `clinann import --create` does: the schema from the conf and the data, the project made
        # in the import's transaction.
        contents = read_upload(files, limits_of(runtime.settings), read_brat_document)
        conf = parse_annotation_conf(contents.annotation_conf) if contents.annotation_conf else None
        schema, additions = schema_for_corpus(conf, contents.documents)
        outcome = upload_batch(runtime.sessions, runtime.settings, None, files, actor_id=None,
                               layer="pre:chia", new_project=("Chia", schema))  # fmt: skip
        project_id = outcome.project_id
        if outcome.status == "held":
            release_batch(
                runtime.sessions,
                outcome.batch_id,
                "public trial criteria, not patient notes",
                actor_id=None,
                now=datetime.now(UTC),
            )
        imported = time.perf_counter() - started
        with runtime.sessions() as db:
            spans = db.scalar(select(func.count()).select_from(Span))
            relations = db.scalar(select(func.count()).select_from(Relation))
        notes = outcome.batch_documents
        print(
            f"import of Chia: {len(files)} files -> {notes} notes, {spans:,} spans, {relations:,} relations "
            f"in {imported:.1f} s (target <= 30 s)"
        )
        print(f"  (includes the PHI screen, which held {outcome.flagged_documents} notes for release;")
        shared = len(outcome.same_text)
        print(f"  {shared} notes share a text with another; {len(additions)} schema additions)")
        for fmt in ("brat", "jsonl"):
            started = time.perf_counter()
            result = export_project(runtime.sessions, project_id, fmt, "pre:chia", actor_id=None)
            print(
                f"export {fmt:<5}: {len(result.content):>12,} bytes in {time.perf_counter() - started:.1f} s"
                " (target <= 15 s)"
            )
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
