"""Dashboard benchmark: the study's metrics report and the lead's dashboard on a large study.

Loads a synthetic study with bulk COPY (documents x physicians x spans, plus the edit log), then prints
the time of app.services.metrics.project_metrics with a breakdown (database loading, each domain
computation), and the server time of GET /lead/projects/{id}/dashboard over real HTTP (the Server-Timing
header), median of a few loads. Target (issue): 10,000 documents x 3 physicians x 100 spans with
1,000,000 edit events, dashboard <= 2 s server time. It also prints the first paint (the bytes of the
dashboard's HTML for the default view; target <= 300 KB at 10,000 notes, issue 20) and the size and
server time of each section the page loads when the lead opens it.

    .venv/bin/python bench/dashboard_bench.py [--documents 10000] [--annotators 3] [--spans 100]
        [--events 1000000] [--loads 3] [--profile]
"""

import argparse
import cProfile
import hashlib
import io
import json
import pstats
import random
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import event, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.db.models import PreAnnotationRun, Project, ProjectMember, User  # noqa: E402
from app.demo.seed import MEDICATION_SCHEMA  # noqa: E402
from app.runtime import open_runtime  # noqa: E402
from app.services import metrics  # noqa: E402
from app.services.users import hash_password  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.web.app import create_app  # noqa: E402

NOTES = Path(__file__).resolve().parent.parent / "app" / "demo" / "notes"
LABELS = [e["name"] for e in MEDICATION_SCHEMA["entity_types"]]
CONDITIONS = ("scratch", "refine_llm", "refine_human")
WORD = re.compile(r"\w\w+")
BATCH_ROWS = 50_000
LEAD = ("bench-lead", "bench-pass")
# The steps project_metrics takes, timed one by one (names in app.services.metrics): computing the
# records of notes whose sets changed (reading their spans and events), and pooling every note's record.
DOMAIN_FUNCTIONS = ("_refresh_notes", "note_statistics", "pooled_report")


def rss_mb() -> float:
    """Peak resident memory of this process (server thread included), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- synthetic study ------------------------------------------------------------------------------------


def corpus() -> str:
    return "\n\n".join(path.read_text() for path in sorted(NOTES.glob("*.txt")))


def note_text(source: str, index: int, length: int) -> str:
    """A ~length-character note cut from the demo notes, different for every index."""
    start = (index * 7919) % max(1, len(source) - length)
    return f"Note {index}\n" + source[start : start + length]


def perturbed(rng: random.Random, truth: list[tuple], spare: list[int], words, rate: float) -> list[tuple]:
    """A physician's (or the model's) version of the reference spans: drops, relabels, boundary changes.

    A span is (slot, words covered: 1 or 2, label). Spans start on even word slots and cover at most the
    following odd word, so they never overlap."""
    spans, free = [], list(spare)
    rng.shuffle(free)
    for slot, width, label in truth:
        r = rng.random()
        if r < rate:  # missed; another mention found instead, keeping about the same count
            if free:
                spans.append((free.pop(), 1, rng.choice(LABELS)))
            continue
        if r < 2 * rate:
            label = rng.choice(LABELS)
        elif r < 3 * rate and slot + 1 < len(words):
            width = 3 - width
        spans.append((slot, width, label))
    return sorted(spans)


class Copier:
    """Rows written to one table with COPY, sent in batches of BATCH_ROWS."""

    def __init__(self, cursor, table: str, columns: tuple[str, ...]):
        self.cursor, self.table, self.columns = cursor, table, columns
        self.lines: list[str] = []
        self.rows = 0

    def add(self, *values) -> None:
        # Only numbers and plain strings reach here (no tab, newline or backslash): no escaping needed.
        self.lines.append("\t".join("\\N" if v is None else str(v) for v in values))
        if len(self.lines) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.lines:
            return
        columns = ", ".join(f'"{c}"' for c in self.columns)
        with self.cursor.copy(f"COPY {self.table} ({columns}) FROM STDIN") as copy:
            copy.write("\n".join(self.lines) + "\n")
        self.rows += len(self.lines)
        self.lines = []


def next_id(cursor, table: str) -> int:
    cursor.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}")
    return cursor.fetchone()[0]


def seed_users_and_project(runtime, annotators: int) -> tuple[int, int, list[int], int]:
    """The lead, the physicians, the project and its study-base pre-annotation run, through the ORM."""
    password = hash_password(LEAD[1])
    with runtime.sessions.begin() as db:
        lead = User(username=LEAD[0], display_name="Bench lead", role="lead", password_hash=password)
        physicians = [
            User(username=f"phys{a + 1}", display_name=f"Physician {a + 1}", role="annotator",
                 password_hash=password)
            for a in range(annotators)
        ]  # fmt: skip
        project = Project(name="Dashboard bench", label_schema=MEDICATION_SCHEMA, study_settings={})
        db.add_all([lead, *physicians, project])
        db.flush()
        run = PreAnnotationRun(
            project_id=project.id, name="bench", method="imported", status="succeeded", is_study_base=True
        )
        db.add(run)
        db.add_all(ProjectMember(project_id=project.id, user_id=u.id) for u in [lead, *physicians])
        db.flush()
        return project.id, lead.id, [u.id for u in physicians], run.id


def generate(runtime, args) -> dict[str, int]:
    """Bulk-load the study; returns the row counts per table."""
    rng = random.Random(args.seed)
    project_id, _, physician_ids, run_id = seed_users_and_project(runtime, args.annotators)
    source = corpus()
    n_sets = args.documents * args.annotators
    per_set, extra = divmod(args.events, n_sets)
    now = datetime.now(UTC)

    raw = runtime.engine.raw_connection()
    try:
        conn = raw.driver_connection
        cur = conn.cursor()
        try:
            # Skip the foreign-key triggers while loading (the generator keeps every reference valid).
            cur.execute("SET session_replication_role = replica")
        except Exception:
            conn.rollback()
        ids = {
            t: next_id(cur, t)
            for t in ("documents", "annotation_sets", "spans", "assignments", "edit_events")
        }

        # Documents first (the only rows with free text, so psycopg escapes them).
        texts: list[str] = []
        document_ids: list[int] = []
        with cur.copy("COPY documents (id, project_id, external_id, text, sha256) FROM STDIN") as copy:
            for i in range(args.documents):
                text = note_text(source, i, args.note_length)
                document_id = ids["documents"] + i
                copy.write_row(
                    (
                        document_id,
                        project_id,
                        f"bench-{i:06d}",
                        text,
                        hashlib.sha256(text.encode()).hexdigest(),
                    )
                )
                texts.append(text)
                document_ids.append(document_id)

        sets = Copier(cur, "annotation_sets",
                      ("id", "document_id", "origin", "annotator_id", "pre_annotation_run_id", "base_set_id",
                       "condition", "status", "version", "submitted_at"))  # fmt: skip
        spans = Copier(cur, "spans", ("id", "annotation_set_id", "uid", "label", "status", "confidence"))
        fragments = Copier(cur, "span_fragments", ("span_id", "ordinal", "start", "end"))
        assignments = Copier(cur, "assignments",
                             ("id", "project_id", "document_id", "annotator_id", "condition",
                              "queue_position", "annotation_set_id", "base_assignment_id",
                              "released_at"))  # fmt: skip
        events = Copier(cur, "edit_events",
                        ("id", "annotation_set_id", "user_id", "page_session_id", "kind", "client_id",
                         "client_monotonic_ms", "set_version", "before", "after"))  # fmt: skip
        set_id, span_id, assignment_id, event_id = (
            ids["annotation_sets"], ids["spans"], ids["assignments"], ids["edit_events"]
        )  # fmt: skip
        set_index = 0

        def write_spans(owner: int, chosen: list[tuple], words, status: str, confidence) -> None:
            nonlocal span_id
            for slot, width, label in chosen:
                start, end = words[slot][0], words[min(slot + width - 1, len(words) - 1)][1]
                spans.add(span_id, owner, f"s{slot}", label, status, confidence)
                fragments.add(span_id, 0, start, end)
                span_id += 1

        for i, (document_id, text) in enumerate(zip(document_ids, texts, strict=True)):
            words = [m.span() for m in WORD.finditer(text)]
            slots = list(range(0, len(words), 2))
            chosen = sorted(rng.sample(slots, min(len(slots), args.spans)))
            spare = sorted(set(slots) - set(chosen))
            truth = [(slot, 2 if rng.random() < 0.3 else 1, rng.choice(LABELS)) for slot in chosen]
            pre_set = set_id
            sets.add(set_id, document_id, "pre_annotation", None, run_id, None, None, "submitted", 0, None)
            write_spans(set_id, perturbed(rng, truth, spare, words, 0.08), words, "pending", 0.8)
            set_id += 1
            if rng.random() < args.gold_share:
                sets.add(set_id, document_id, "gold", None, None, None, None, "submitted", 0, None)
                write_spans(set_id, truth, words, "confirmed", None)
                set_id += 1
            scratch_set = scratch_assignment = None
            for a in range(len(physician_ids)):
                condition = CONDITIONS[(i + a) % len(CONDITIONS)]
                if condition == "scratch":
                    scratch_set, scratch_assignment = set_id + a, assignment_id + a
            for a, user_id in enumerate(physician_ids):
                condition = CONDITIONS[(i + a) % len(CONDITIONS)]
                base = {"refine_llm": pre_set, "refine_human": scratch_set}.get(condition)
                n_events = per_set + (set_index < extra)
                submitted_at = (now - timedelta(minutes=rng.randint(1, 60 * 24 * 90))).isoformat()
                sets.add(set_id, document_id, "annotator", user_id, None, base, condition, "submitted",
                         n_events, submitted_at)  # fmt: skip
                write_spans(set_id, perturbed(rng, truth, spare, words, 0.04), words, "confirmed", None)
                base_assignment = scratch_assignment if condition == "refine_human" else None
                assignments.add(assignment_id, project_id, document_id, user_id, condition, i, set_id,
                                base_assignment, now.isoformat())  # fmt: skip
                # The edit log: open, activity / add / accept, submit; a quarter of the sets in two page
                # sessions (a reload), each with its own client clock.
                sessions = 2 if rng.random() < 0.25 and n_events >= 6 else 1
                split = n_events // 2 if sessions == 2 else n_events
                version, clock, session = 0, 0.0, f"p{set_id}-0"
                for j in range(n_events):
                    if j == 0 or j == split:
                        kind, session, clock = "open", f"p{set_id}-{int(j == split)}", rng.uniform(0, 500)
                    elif j == n_events - 1:
                        kind = "submit"
                    else:
                        r = rng.random()
                        kind = "activity" if r < 0.6 else "accept" if r < 0.85 else "add"
                        # Mostly a few seconds apart; now and then a pause longer than the idle threshold.
                        clock += (
                            rng.uniform(90_000, 600_000) if rng.random() < 0.04 else rng.uniform(500, 20_000)
                        )
                    if kind in ("accept", "add"):
                        version += 1
                    events.add(event_id, set_id, user_id, session, kind, f"c{j}", f"{clock:.3f}", version,
                               "{}", "{}")  # fmt: skip
                    event_id += 1
                set_id += 1
                assignment_id += 1
                set_index += 1
        for copier in (sets, spans, fragments, assignments, events):
            copier.flush()
        for table, column in (("documents", "id"), ("annotation_sets", "id"), ("spans", "id"),
                              ("assignments", "id"), ("edit_events", "id")):  # fmt: skip
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), max({column})) FROM {table}"
            )
        cur.execute("RESET session_replication_role")  # the connection goes back to the app's pool
        conn.commit()
        counts = {
            "documents": len(document_ids),
            "annotation_sets": sets.rows,
            "spans": spans.rows,
            "span_fragments": fragments.rows,
            "assignments": assignments.rows,
            "edit_events": events.rows,
        }
    finally:
        raw.close()
    return counts | {"project_id": project_id}


def vacuum_analyze(runtime) -> None:
    """What autovacuum would have done on a live database: statistics and visibility maps."""
    raw = runtime.engine.raw_connection()
    try:
        conn = raw.driver_connection
        conn.autocommit = True
        for table in (
            "documents",
            "annotation_sets",
            "spans",
            "span_fragments",
            "assignments",
            "edit_events",
        ):
            conn.execute(f"VACUUM (ANALYZE) {table}")
    finally:
        conn.autocommit = False
        raw.close()


# ---- measuring project_metrics --------------------------------------------------------------------------


class TimedSessions:
    """A sessionmaker stand-in that times the `with sessions() as db:` block (the database loading)."""

    def __init__(self, real):
        self.real, self.seconds = real, 0.0

    def __call__(self):
        return _TimedSession(self)

    def begin(self):
        return _TimedSession(self, begin=True)


class _TimedSession:
    def __init__(self, owner: TimedSessions, begin: bool = False):
        self.owner, self.begin = owner, begin

    def __enter__(self):
        self.started = time.perf_counter()
        self.session = self.owner.real.begin() if self.begin else self.owner.real()
        return self.session.__enter__()

    def __exit__(self, *exc):
        result = self.session.__exit__(*exc)
        self.owner.seconds += time.perf_counter() - self.started
        return result


def timed_project_metrics(runtime, project_id: int) -> tuple[float, dict]:
    """One project_metrics call with the dashboard's defaults; wall time and where it went."""
    domain: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    originals = {name: getattr(metrics, name) for name in DOMAIN_FUNCTIONS}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                domain[name][0] += time.perf_counter() - started
                domain[name][1] += 1

        return wrapper

    statements: list[tuple[float, int, str]] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_started"] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        elapsed = time.perf_counter() - conn.info.pop("bench_started")
        statements.append((elapsed, cursor.rowcount, " ".join(statement.split())[:90]))

    sessions = TimedSessions(runtime.sessions)
    for name, function in originals.items():
        setattr(metrics, name, timed(name, function))
    event.listen(runtime.engine, "before_cursor_execute", before)
    event.listen(runtime.engine, "after_cursor_execute", after)
    try:
        started = time.perf_counter()
        report = metrics.project_metrics(sessions, project_id)
        wall = time.perf_counter() - started
    finally:
        event.remove(runtime.engine, "before_cursor_execute", before)
        event.remove(runtime.engine, "after_cursor_execute", after)
        for name, function in originals.items():
            setattr(metrics, name, function)
    sql = sum(s[0] for s in statements)
    return wall, {
        "load_block_s": sessions.seconds,
        "sql_execute_s": sql,
        "domain_s": {k: {"seconds": v[0], "calls": v[1]} for k, v in domain.items()},
        "statements": sorted(statements, reverse=True)[:6],
        "submitted_sets": report["submitted_sets"],
        "documents": report["documents"],
    }


def print_breakdown(breakdown: dict) -> None:
    print(f"  database (with sessions()):           {breakdown['load_block_s']:7.2f} s")
    print(f"    SQL execute + transfer:             {breakdown['sql_execute_s']:7.2f} s")
    for name, figure in breakdown["domain_s"].items():
        print(f"  {name:<36} {figure['seconds']:7.2f} s  ({figure['calls']:,} calls)")
    print("  slowest statements:")
    for elapsed, rows, statement in breakdown["statements"][:4]:
        print(f"    {elapsed:6.2f} s {rows:>10,} rows  {statement}")


def touch_sets(runtime, project_id: int, notes: int) -> int:
    """A day of work: `notes` submitted sets changed (their version bumped), so their records are stale."""
    with runtime.sessions.begin() as db:
        return db.execute(
            text(
                "UPDATE annotation_sets SET version = version + 1 WHERE id IN ("
                "SELECT s.id FROM annotation_sets s JOIN documents d ON d.id = s.document_id "
                "WHERE d.project_id = :p AND s.origin = 'annotator' ORDER BY s.id LIMIT :n)"
            ),
            {"p": project_id, "n": notes},
        ).rowcount


def time_cli(runtime, loads: int) -> list[float]:
    """Wall time of the command line's report on this database, as a script would run it."""
    import os
    import subprocess

    env = {**os.environ, "CLINANN_DATABASE_URL": runtime.database.url}
    command = [sys.executable, "-m", "app.cli", "metrics", "--project", "Dashboard bench", "--json"]
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"clinann metrics failed: {done.stderr[-500:]}")
        if json.loads(done.stdout)["documents"] <= 0:
            raise SystemExit("clinann metrics reported no documents")
    return times


def profile_project_metrics(runtime, project_id: int, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    metrics.project_metrics(runtime.sessions, project_id)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(top)
    print("\ncProfile of project_metrics, by cumulative time:")
    print(out.getvalue()[out.getvalue().find("   ncalls") :])
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    print("cProfile of project_metrics, by own time:")
    print(out.getvalue()[out.getvalue().find("   ncalls") :])


# ---- the dashboard over HTTP ------------------------------------------------------------------------------


def serve(runtime, port: int) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime), host="127.0.0.1", port=port, log_level="warning", proxy_headers=False
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server


def bench_dashboard(
    base_url: str, project_id: int, loads: int, query: str = ""
) -> tuple[list[float], list[float], int]:
    """Server time (Server-Timing) and round trip of each dashboard load, in ms, and the page's size."""
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=None)
    login = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    response = client.post("/login", data={"username": LEAD[0], "password": LEAD[1], "csrf_token": token})
    if response.status_code != 303:
        raise SystemExit(f"login failed: {response.status_code}")
    server_times, round_trips, size = [], [], 0
    for _ in range(loads):
        started = time.perf_counter()
        page = client.get(f"/lead/projects/{project_id}/dashboard{query}")
        round_trips.append((time.perf_counter() - started) * 1000)
        if page.status_code != 200:
            raise SystemExit(f"dashboard failed: {page.status_code} {page.text[:300]}")
        server_times.append(float(page.headers["server-timing"].split("dur=")[1]))
        size = len(page.content)
    return server_times, round_trips, size


FIRST_PAINT_TARGET = 300 * 1024


def bench_sections(base_url: str, project_id: int) -> list[tuple[str, int, float]]:
    """(section, bytes, server ms) of each folded section of the dashboard, as the page fetches them."""
    from app.web.routers.lead_dashboard import DASHBOARD_SECTIONS

    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=None)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    client.post("/login", data={"username": LEAD[0], "password": LEAD[1], "csrf_token": token})
    sizes = []
    for section in DASHBOARD_SECTIONS:
        response = client.get(
            f"/lead/projects/{project_id}/dashboard/section",
            params={"section": section},
            headers={"HX-Request": "true"},
        )
        if response.status_code != 200:
            raise SystemExit(f"section {section} failed: {response.status_code} {response.text[:300]}")
        sizes.append(
            (section, len(response.content), float(response.headers["server-timing"].split("dur=")[1]))
        )
    return sizes


def screenshot(base_url: str, project_id: int, path: str) -> None:
    """The dashboard's first screen as the lead sees it, in Debian's Chromium at 1280x800."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800}, base_url=base_url)
        page.goto("/login")
        page.fill("#username", LEAD[0])
        page.fill("#password", LEAD[1])
        page.click("[data-testid=login-submit]")
        page.wait_for_load_state()
        page.goto(f"/lead/projects/{project_id}/dashboard", timeout=120_000)
        page.screenshot(path=path)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--spans", type=int, default=100, help="spans per annotation set")
    parser.add_argument("--events", type=int, default=1_000_000, help="edit events in all")
    parser.add_argument("--note-length", type=int, default=2_000, help="characters per note")
    parser.add_argument("--gold-share", type=float, default=0.05, help="share of notes with a gold set")
    parser.add_argument("--loads", type=int, default=3, help="dashboard loads (median reported)")
    parser.add_argument("--dump-records", help="write the notes' stored records to this JSON file")
    parser.add_argument("--touch", type=int, default=100, help="sets changed before the last report")
    parser.add_argument("--profile", action="store_true", help="cProfile one project_metrics call")
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=8932)
    parser.add_argument("--screenshot", help="save the dashboard's first screen (Chromium, 1280x800) here")
    args = parser.parse_args()

    runtime = open_runtime(
        Settings(data_dir=Path(tempfile.mkdtemp(prefix="clinann-dashboard-bench-")), secret_key="bench")
    )
    try:
        print(
            f"study: {args.documents:,} documents x {args.annotators} physicians x {args.spans} spans, "
            f"{args.events:,} edit events, notes of ~{args.note_length:,} characters"
        )
        started = time.perf_counter()
        counts = generate(runtime, args)
        generation = time.perf_counter() - started
        started = time.perf_counter()
        vacuum_analyze(runtime)
        vacuum = time.perf_counter() - started
        project_id = counts.pop("project_id")
        print(
            f"data generation: {generation:7.1f} s  (+ VACUUM ANALYZE {vacuum:.1f} s; not part of the target)"
        )
        print("  rows: " + ", ".join(f"{table} {n:,}" for table, n in counts.items()))
        print(f"  peak memory so far: {rss_mb():,.0f} MB")

        cold, breakdown = timed_project_metrics(runtime, project_id)
        print(
            f"\nproject_metrics, first call: {cold:7.2f} s wall "
            f"({breakdown['submitted_sets']:,} submitted sets)"
        )
        print("  (every note's record computed from its spans and events, and stored: once per note)")
        print_breakdown(breakdown)
        with runtime.sessions() as db:
            size = db.execute(
                text(
                    "SELECT count(*), avg(length(statistics::text)), sum(pg_column_size(statistics)) "
                    "FROM note_statistics"
                )
            ).one()
        print(
            f"  records: {size[0]:,}, {size[1]:,.0f} characters of JSON each, "
            f"{size[2] / 2**20:,.1f} MiB stored"
        )
        if args.dump_records:
            with runtime.sessions() as db:
                rows = db.execute(
                    text("SELECT document_id, statistics::text FROM note_statistics ORDER BY 1")
                ).all()
            Path(args.dump_records).write_text("{" + ",".join(f'"{d}": {r}' for d, r in rows) + "}")
        warm = [timed_project_metrics(runtime, project_id) for _ in range(args.loads)]
        wall, breakdown = sorted(warm, key=lambda item: item[0])[len(warm) // 2]
        print(
            f"\nproject_metrics, records stored: median {wall:7.2f} s wall "
            f"(each: {', '.join(f'{w:.2f}' for w, _ in warm)} s)"
        )
        print_breakdown(breakdown)
        touched = touch_sets(runtime, project_id, args.touch)
        changed, breakdown = timed_project_metrics(runtime, project_id)
        print(f"\nproject_metrics after {touched} sets changed: {changed:7.2f} s wall")
        print_breakdown(breakdown)
        print(f"  peak memory so far: {rss_mb():,.0f} MB")

        cli = time_cli(runtime, args.loads)
        print(
            f"\n`clinann metrics --project 'Dashboard bench' --json` as a separate process: median "
            f"{statistics.median(cli):.2f} s wall (each: {', '.join(f'{t:.2f}' for t in cli)} s; "
            "process start, imports and connection included)"
        )

        if args.profile:
            profile_project_metrics(runtime, project_id, args.profile_top)

        server = serve(runtime, args.port)
        pages, first_paint = {}, 0
        for name, query in (("dashboard", ""), ("idle threshold 120 s", "?idle=120"),
                            ("filtered to refine_llm", "?condition=refine_llm")):  # fmt: skip
            server_times, round_trips, size = bench_dashboard(
                f"http://127.0.0.1:{args.port}", project_id, args.loads + 1, query
            )
            # The first load of a filtered view computes its records; the later ones read them.
            first, later = server_times[0], server_times[1:]
            pages[name] = statistics.median(later)
            if name == "dashboard":
                first_paint = size
            print(
                f"\nGET /lead/projects/{project_id}/dashboard{query} ({name}): server time median "
                f"{statistics.median(later):,.0f} ms (first load {first:,.0f} ms, then "
                f"{', '.join(f'{t:,.0f}' for t in later)} ms; target <= 2,000 ms)"
            )
            print(
                f"  round trip median {statistics.median(round_trips[1:]):,.0f} ms, "
                f"page {size / 1024:,.0f} KiB, "
                f"peak memory {rss_mb():,.0f} MB"
            )
        verdict = "meets" if first_paint <= FIRST_PAINT_TARGET else "MISSES"
        print(
            f"\nfirst paint (GET /lead/projects/{project_id}/dashboard, default view): {first_paint:,} bytes "
            f"({first_paint / 1024:,.0f} KiB; target <= 300 KB: {verdict} it)"
        )
        sections = bench_sections(f"http://127.0.0.1:{args.port}", project_id)
        for section, size, server_ms in sections:
            print(
                f"  section {section:<16} {size / 1024:8,.1f} KiB, server time {server_ms:,.0f} ms "
                "(loaded on opening)"
            )
        if args.screenshot:
            screenshot(f"http://127.0.0.1:{args.port}", project_id, args.screenshot)
            print(f"\nscreenshot of the dashboard at 1280x800: {args.screenshot}")
        server.should_exit = True
        print(
            json.dumps(
                {
                    "documents": args.documents,
                    "annotators": args.annotators,
                    "spans": args.spans,
                    "edit_events": counts["edit_events"],
                    "generation_s": round(generation, 2),
                    "project_metrics_first_s": round(cold, 3),
                    "project_metrics_s": round(wall, 3),
                    "project_metrics_after_changes_s": round(changed, 3),
                    "clinann_metrics_cli_median_s": round(statistics.median(cli), 3),
                    "dashboard_server_median_ms": {k: round(v, 1) for k, v in pages.items()},
                    "first_paint_bytes": first_paint,
                    "section_bytes": {section: size for section, size, _ in sections},
                    "peak_rss_mb": round(rss_mb()),
                }
            )
        )
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
