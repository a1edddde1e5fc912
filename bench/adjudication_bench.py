"""Adjudication benchmark: the lead's queue, opening a note's adjudication, the gold page and one
"keep" edit, on a large study (the dashboard bench's synthetic data: every note done by every physician).

Prints the server time (Server-Timing) over real HTTP of: the queue page (every note with two or more
submitted sets, ordered by agreement), starting a note's gold set (its proposal), the gold page with
the comparison, and adopting a physician's version (the edit round trip), medians of a few loads.

    .venv/bin/python bench/adjudication_bench.py [--documents 2000] [--annotators 3] [--spans 100]
"""

import argparse
import cProfile
import pstats
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard_bench import LEAD, generate, serve, vacuum_analyze  # noqa: E402

from app.runtime import open_runtime  # noqa: E402
from app.services import adjudication  # noqa: E402
from app.settings import Settings  # noqa: E402


def log_in(client: httpx.Client) -> str:
    login = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    response = client.post("/login", data={"username": LEAD[0], "password": LEAD[1], "csrf_token": token})
    if response.status_code != 303:
        raise SystemExit(f"login failed: {response.status_code}")
    page = client.get("/lead")
    return re.search(r'"X-CSRF-Token": "([^"]+)"', page.text).group(1)


def server_ms(response: httpx.Response) -> float:
    return float(response.headers["server-timing"].split("dur=")[1])


def median_line(name: str, values: list[float]) -> str:
    return f"{name}: median {statistics.median(values):8.1f} ms  ({', '.join(f'{v:.0f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=2_000)
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--spans", type=int, default=100)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--note-length", type=int, default=2_000)
    parser.add_argument("--gold-share", type=float, default=0.0)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--notes", type=int, default=5, help="notes adjudicated (start, page, keep)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=8933)
    parser.add_argument("--profile", action="store_true", help="cProfile the queue's first computation")
    args = parser.parse_args()
    args.events = args.events or args.documents * args.annotators  # the generator wants some

    runtime = open_runtime(
        Settings(data_dir=Path(tempfile.mkdtemp(prefix="clinann-adjudication-bench-")), secret_key="bench")
    )
    try:
        print(
            f"study: {args.documents:,} notes x {args.annotators} physicians x {args.spans} spans, "
            f"every set submitted"
        )
        started = time.perf_counter()
        counts = generate(runtime, args)
        vacuum_analyze(runtime)
        project_id = counts.pop("project_id")
        print(f"data generation: {time.perf_counter() - started:.1f} s (not part of the figures)")

        started = time.perf_counter()
        profile = cProfile.Profile() if args.profile else None
        if profile:
            profile.enable()
        items = adjudication.adjudication_queue(runtime.sessions, project_id)
        if profile:
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
        print(
            f"\nadjudication_queue (service): {(time.perf_counter() - started) * 1000:8.1f} ms, "
            f"{len(items):,} notes"
        )
        disputed = statistics.mean(i.disputed for i in items)
        stretches = statistics.mean(i.candidates for i in items)
        print(f"  mean disputed stretches per note: {disputed:.1f} of {stretches:.1f}")

        server = serve(runtime, args.port)
        client = httpx.Client(base_url=f"http://127.0.0.1:{args.port}", follow_redirects=False, timeout=None)
        csrf = log_in(client)
        queue = [
            server_ms(client.get(f"/lead/projects/{project_id}/adjudication")) for _ in range(args.loads)
        ]
        print(median_line("queue page (server time)", queue))

        starts, pages, keeps, keep_trips = [], [], [], []
        for item in items[: args.notes]:
            response = client.post(
                f"/lead/projects/{project_id}/adjudication/{item.document_id}", data={"csrf_token": csrf}
            )
            starts.append(server_ms(response))
            gold_url = response.headers["location"]
            page = client.get(gold_url)
            pages.append(server_ms(page))
            version = int(re.search(r'"version": (\d+)', page.text).group(1))
            keep = re.search(
                r'data-source-set="(\d+)" data-source-uid="([^"]+)" data-testid="keep"', page.text
            )
            if keep is None:
                continue
            began = time.perf_counter()
            answer = client.post(
                f"{gold_url}/edits",
                json={
                    "kind": "adopt",
                    "client_id": f"bench-{item.document_id}",
                    "page_session": "bench",
                    "version": version,
                    "source_set": int(keep.group(1)),
                    "source_uid": keep.group(2),
                },
                headers={"X-CSRF-Token": csrf},
            )
            keep_trips.append((time.perf_counter() - began) * 1000)
            if answer.status_code != 200:
                raise SystemExit(f"keep failed: {answer.status_code} {answer.text[:300]}")
            keeps.append(server_ms(answer))
        print(median_line("start adjudication: gold set + proposal (server time)", starts))
        print(median_line("gold page with the comparison (server time)", pages))
        print(median_line("keep a version: edit (server time)", keeps))
        print(median_line("keep a version: round trip", keep_trips))
        server.should_exit = True
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
