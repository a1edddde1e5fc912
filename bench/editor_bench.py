"""Editor benchmark: a 40,000-character note with 600 spans.

Prints the server time per edit and the HTTP round trip (p50, p95) over real HTTP on loopback,
and the time until the editor page is interactive in Chromium. Targets (issue 3): edit round trip
p95 <= 50 ms on a 2-core machine; page ready <= 1 s.

    .venv/bin/python bench/editor_bench.py [--edits 300] [--loads 5]
"""

import argparse
import hashlib
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.db.models import AnnotationSet, Document, PreAnnotationRun, Project, User  # noqa: E402
from app.demo.seed import MEDICATION_SCHEMA  # noqa: E402
from app.domain.spans import Fragment, SpanData  # noqa: E402
from app.domain.vocabulary import Condition, SetOrigin, SpanStatus  # noqa: E402
from app.runtime import open_runtime  # noqa: E402
from app.services.annotation_sets import add_spans, assign  # noqa: E402
from app.services.users import hash_password  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.web.app import create_app  # noqa: E402

NOTES = Path(__file__).resolve().parent.parent / "app" / "demo" / "notes"
LABELS = [e["name"] for e in MEDICATION_SCHEMA["entity_types"]]


def long_note(length: int = 40_000) -> str:
    parts, total = [], 0
    for path in sorted(NOTES.glob("*.txt")):
        parts.append(path.read_text())
        total += len(parts[-1])
        if total >= length:
            break
    return "\n".join(parts)[:length]


def seed(runtime, text: str, n_spans: int) -> int:
    words = [m.span() for m in re.finditer(r"\w{4,}", text)]
    step = max(1, len(words) // n_spans)
    chosen = words[::step][:n_spans]
    with runtime.sessions.begin() as db:
        user = User(
            username="bench",
            display_name="Bench",
            role="annotator",
            password_hash=hash_password("bench-pass"),
        )
        project = Project(name="Bench", label_schema=MEDICATION_SCHEMA, study_settings={})
        db.add_all([user, project])
        db.flush()
        document = Document(
            project_id=project.id,
            external_id="long",
            text=text,
            sha256=hashlib.sha256(text.encode()).hexdigest(),
        )
        run = PreAnnotationRun(project_id=project.id, name="bench", method="imported", status="succeeded")
        db.add_all([document, run])
        db.flush()
        pre = AnnotationSet(
            document_id=document.id,
            origin=SetOrigin.pre_annotation.value,
            pre_annotation_run_id=run.id,
            status="submitted",
        )
        db.add(pre)
        db.flush()
        add_spans(
            db,
            pre,
            [
                SpanData(LABELS[i % len(LABELS)], (Fragment(a, b),), confidence=0.8)
                for i, (a, b) in enumerate(chosen)
            ],
            status=SpanStatus.pending,
        )
        assignment = assign(
            db,
            project_id=project.id,
            document_id=document.id,
            annotator_id=user.id,
            condition=Condition.refine_llm,
            queue_position=0,
            base_set=pre,
        )
        return assignment.annotation_set_id


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


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def bench_edits(base_url: str, set_id: int, text: str, n: int) -> tuple[list[float], list[float]]:
    client = httpx.Client(base_url=base_url, follow_redirects=False)
    login = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    client.post("/login", data={"username": "bench", "password": "bench-pass", "csrf_token": token})
    page = client.get(f"/annotate/sets/{set_id}").text
    csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', page).group(1)
    uids = re.findall(r'data-uid="([^"]+)"', page)
    words = [m.span() for m in re.finditer(r"\w{3,}", text)]
    version, round_trips, server_times = 0, [], []
    for i in range(n):
        kind = ["accept", "relabel", "add", "modify", "reject"][i % 5]
        body = {
            "kind": kind,
            "client_id": f"b{i}",
            "page_session": "bench",
            "version": version,
            "monotonic_ms": float(i),
        }
        if kind == "add":
            a, b = words[(i * 7) % len(words)]
            body |= {"uid": f"new{i}", "label": "Drug", "fragments": [[a, b]]}
        else:
            body["uid"] = uids[i % len(uids)] if kind != "reject" else uids[-(i // 5) - 1]
            if kind == "relabel":
                body["label"] = LABELS[i % len(LABELS)]
            if kind == "modify":
                a, b = words[(i * 13) % len(words)]
                body["fragments"] = [[a, b]]
        started = time.perf_counter()
        response = client.post(f"/annotate/sets/{set_id}/edits", json=body, headers={"X-CSRF-Token": csrf})
        round_trips.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"edit {i} ({kind}) failed: {response.status_code} {response.text[:200]}")
        server_times.append(float(response.headers["server-timing"].split("dur=")[1]))
        version = int(response.headers["x-set-version"])
    return round_trips, server_times


def bench_page(base_url: str, set_id: int, loads: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1366, "height": 800})
        page.goto(f"{base_url}/login")
        page.fill("#username", "bench")
        page.fill("#password", "bench-pass")
        page.click("[data-testid=login-submit]")
        page.wait_for_load_state()
        for _ in range(loads + 1):  # the first load warms caches and is not counted
            page.goto(f"{base_url}/annotate/sets/{set_id}")
            page.wait_for_function("document.body.dataset.editorReady === 'true'")
            times.append(page.evaluate("performance.now()"))  # ms since navigation start
        marks = page.evaluate("document.querySelectorAll('.mark').length")
        browser.close()
    print(f"  marks drawn on the page: {marks}")
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edits", type=int, default=300)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--port", type=int, default=8931)
    args = parser.parse_args()
    runtime = open_runtime(
        Settings(data_dir=Path(tempfile.mkdtemp(prefix="clinann-bench-")), secret_key="bench")
    )
    try:
        text = long_note()
        set_id = seed(runtime, text, 600)
        server = serve(runtime, args.port)
        base_url = f"http://127.0.0.1:{args.port}"
        print(f"note: {len(text):,} characters, 600 pre-labels (refine_llm)")
        round_trips, server_times = bench_edits(base_url, set_id, text, args.edits)
        print(f"edits: {len(round_trips)} (accept, relabel, add, modify, reject in turn)")
        for name, values, target in [
            ("server time per edit", server_times, ""),
            ("HTTP round trip", round_trips, "   (target p95 <= 50 ms)"),
        ]:
            p50, p95 = percentile(values, 50), percentile(values, 95)
            print(f"  {name:<22} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms{target}")
        loads = bench_page(base_url, set_id, args.loads)
        print(
            f"page ready in Chromium: median {statistics.median(loads):6.0f} ms   max {max(loads):6.0f} ms"
            f"   over {len(loads)} loads (target <= 1000 ms)"
        )
        print(
            json.dumps(
                {
                    "edit_server_p50_ms": percentile(server_times, 50),
                    "edit_server_p95_ms": percentile(server_times, 95),
                    "edit_round_trip_p95_ms": percentile(round_trips, 95),
                    "page_ready_median_ms": statistics.median(loads),
                }
            )
        )
        server.should_exit = True
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
