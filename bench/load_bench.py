"""Load benchmark: simultaneous physicians editing against a real server and PostgreSQL.

Starts an embedded PostgreSQL, seeds physicians with assigned notes, starts `clinann serve --workers
N --no-worker` as a separate process, then plays physician sessions with aiohttp over real HTTP: log
in, open the note, label words at human pace with bursts (a few edits in quick succession), send
activity events, and submit at the end. For each level of simultaneous physicians it prints the
throughput and p50/p95/p99 of the edit round trips, and the errors. Target (issue 10): p99 <= 50 ms
with 50 physicians on a 2-core machine, zero errors.

    .venv/bin/pip install -e ".[bench]"   # aiohttp, for the physicians' clients
    .venv/bin/python bench/load_bench.py [--levels 10 50 200] [--seconds 30] [--workers 2] [--repeat 1]
"""

import argparse
import asyncio
import gc
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

try:
    import aiohttp
except ImportError:  # a bench extra, not needed to run or test clinann
    sys.exit("bench/load_bench.py needs aiohttp: .venv/bin/pip install -e '.[bench]'")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db.models import Document, Project, User  # noqa: E402
from app.demo.seed import MEDICATION_SCHEMA  # noqa: E402
from app.domain.vocabulary import Condition  # noqa: E402
from app.runtime import open_runtime  # noqa: E402
from app.services.annotation_sets import assign  # noqa: E402
from app.services.users import hash_password  # noqa: E402
from app.settings import Settings  # noqa: E402

PASSWORD = "load-bench-password"
LABELS = [e["name"] for e in MEDICATION_SCHEMA["entity_types"]]
WORD = re.compile(r"[A-Za-z]{3,}")
READING_SECONDS = 8.0  # reading the note before the first label: up to this long


def seed(runtime, physicians: int, levels: int) -> dict[str, list[tuple[int, str]]]:
    """Physicians with one scratch note per level; returns login -> [(set id, note text)] per level."""
    texts = [p.read_text() for p in sorted((ROOT / "app" / "demo" / "notes").glob("*.txt"))]
    hashed = hash_password(PASSWORD)  # one hash for all: argon2 is slow on purpose
    plan: dict[str, list[tuple[int, str]]] = {}
    with runtime.sessions.begin() as db:
        project = Project(name="Load bench", label_schema=MEDICATION_SCHEMA, study_settings={})
        users = [
            User(
                username=f"phys{i:03d}", display_name=f"Physician {i}", role="annotator", password_hash=hashed
            )
            for i in range(physicians)
        ]
        db.add_all([project, *users])
        db.flush()
        for level in range(levels):
            for i, user in enumerate(users):
                text = texts[(i + level) % len(texts)]
                document = Document(
                    project_id=project.id,
                    external_id=f"load-{level}-{i}",
                    text=text,
                    sha256=hashlib.sha256(f"{level}-{i}-{text}".encode()).hexdigest(),
                )
                db.add(document)
                db.flush()
                assignment = assign(
                    db, project_id=project.id, document_id=document.id, annotator_id=user.id,
                    condition=Condition.scratch, queue_position=level,
                )  # fmt: skip
                plan.setdefault(user.username, []).append((assignment.annotation_set_id, text))
    return plan


class Recorder:
    def __init__(self) -> None:
        self.edits: list[float] = []  # round trips, ms
        self.server: list[float] = []  # the server's own time for each edit (Server-Timing), ms
        self.steady: list[float] = []  # round trips after each physician's first 3 edits (caches warm)
        self.events: list[float] = []
        self.retried = 0  # requests sent again after a dropped connection (as the editor does)
        self.submits: list[float] = []  # the last edit of each session, apart: it also queues a refresh
        self.errors: list[str] = []
        self.cpu: dict[str, float] = {}  # CPU seconds by kind of process, while physicians edit


async def physician(base_url: str, login: str, set_id: int, text: str, start_line, rng: random.Random,
                    recorder: Recorder) -> None:  # fmt: skip
    """Log in and open the note (not measured: logins are rare, argon2 is slow on purpose), wait for
    every physician to be ready, then edit at human pace until the level's time is up.

    Each physician has a client of their own (its own connection and cookies, as a browser has), on
    aiohttp: its C parser keeps the load generator's own cost, which every round trip includes on
    this shared machine, near a browser's."""
    jar = aiohttp.CookieJar(unsafe=True)  # the server is 127.0.0.1: cookies for an address
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base_url, cookie_jar=jar, timeout=timeout) as client:
        try:
            async with client.get("/login") as form:
                token = re.search(r'name="csrf_token" value="([^"]+)"', await form.text()).group(1)
            credentials = {"username": login, "password": PASSWORD, "csrf_token": token}
            async with client.post("/login", data=credentials, allow_redirects=False) as answer:
                logged_in = answer.status == 303
                status = answer.status
            if logged_in:
                async with client.get(f"/annotate/sets/{set_id}") as page:
                    status, page_text = page.status, await page.text()
        except aiohttp.ClientError as error:
            status = None
            recorder.errors.append(f"opening {type(error).__name__}")
        if status != 200:
            if status is not None:
                recorder.errors.append(f"opening {status}")
            await start_line()  # never hold the others back
            return
        csrf = json.loads(re.search(r"hx-headers='([^']+)'", page_text).group(1))["X-CSRF-Token"]
        version = int(re.search(r'"version": (\d+)', page_text).group(1))
        headers = {"X-CSRF-Token": csrf}
        words = [m.span() for m in WORD.finditer(text)]
        rng.shuffle(words)
        session = f"load-{login}-{set_id}"
        started = time.perf_counter()
        counter = 0
        last_events = time.monotonic()

        async def post(path: str, body: dict) -> tuple[int, dict[str, str]]:
            # A keep-alive connection the server closed meanwhile: send again with the same client id,
            # as the editor does (the server applies an edit once whatever the retries).
            for attempt in range(3):
                try:
                    async with client.post(path, json=body, headers=headers) as response:
                        await response.read()
                        return response.status, response.headers
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                    if attempt == 2:
                        raise
                    recorder.retried += 1
            raise AssertionError("unreachable")

        async def send(body: dict) -> None:
            nonlocal version
            began = time.perf_counter()
            try:
                status, answer_headers = await post(f"/annotate/sets/{set_id}/edits", body)
            except aiohttp.ClientError as error:
                recorder.errors.append(f"edit {type(error).__name__}")
                return
            elapsed = (time.perf_counter() - began) * 1000
            if status == 200 and body["kind"] == "submit":
                recorder.submits.append(elapsed)
            elif status == 200:
                recorder.edits.append(elapsed)
                if counter > 3:
                    recorder.steady.append(elapsed)
                recorder.server.append(float(answer_headers["server-timing"].split("dur=")[1]))
                version = int(answer_headers["X-Set-Version"])
            else:
                recorder.errors.append(f"edit {status}")

        async def events(kind: str) -> None:
            ms = (time.perf_counter() - started) * 1000
            event = {"kind": kind, "client_id": f"{session}-t{counter}-{kind}", "monotonic_ms": ms}
            body = {"page_session": session, "events": [event]}
            began = time.perf_counter()
            try:
                status, _ = await post(f"/annotate/sets/{set_id}/events", body)
            except aiohttp.ClientError as error:
                recorder.errors.append(f"events {type(error).__name__}")
                return
            if status == 204:
                if kind != "open":  # "open" goes with the page load, amid the logins, not measured
                    recorder.events.append((time.perf_counter() - began) * 1000)
            else:
                recorder.errors.append(f"events {status}")

        await events("open")
        until = await start_line()
        # Each physician finishes their note at a time of their own in the window's second half.
        until -= rng.uniform(0, 0.5) * (until - time.monotonic())
        # Nobody labels the moment the note appears: each reads it first, and physicians do not all
        # open their notes in the same second (logins and page loads are kept out of the figures).
        await asyncio.sleep(rng.uniform(0, READING_SECONDS))
        while time.monotonic() < until and words:
            burst = rng.randint(3, 6) if rng.random() < 0.25 else 1
            for _ in range(burst):
                if not words or time.monotonic() >= until:
                    break
                start, end = words.pop()
                counter += 1
                await send({
                    "kind": "add", "client_id": f"{session}-e{counter}", "page_session": session,
                    "version": version, "monotonic_ms": (time.perf_counter() - started) * 1000,
                    "uid": f"{session}-u{counter}", "label": rng.choice(LABELS), "fragments": [[start, end]],
                })  # fmt: skip
                if burst > 1:
                    await asyncio.sleep(rng.uniform(0.15, 0.4))
            if time.monotonic() - last_events > 10:
                await events("activity")
                last_events = time.monotonic()
            await asyncio.sleep(min(rng.expovariate(1 / 3.0), 12))  # reading and thinking
        counter += 1
        await send({"kind": "submit", "client_id": f"{session}-submit", "page_session": session,
                    "version": version, "monotonic_ms": (time.perf_counter() - started) * 1000})  # fmt: skip


def run_async(coroutine):
    """On uvloop when installed (it is, with the server): one event loop plays every physician's
    browser, and its own overhead is counted in each round trip, so keep it small."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the server's processes, PostgreSQL's and this load generator's,
    read from /proc (Linux): what each edit costs the machine, apart from what it costs the clock."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    totals = {"server": 0.0, "postgres": 0.0, "load generator": 0.0}

    def descends_from(pid: int, ancestor: int) -> bool:
        while pid > 1:
            if pid == ancestor:
                return True
            pid = parents.get(pid, 0)
        return False

    for pid, (name, seconds) in used.items():
        if name == "postgres":
            totals["postgres"] += seconds
        elif descends_from(pid, server_pid):
            totals["server"] += seconds
        elif pid == os.getpid():
            totals["load generator"] += seconds
    return totals


def cpu_ticks() -> tuple[int, int]:
    """(all, stolen) CPU ticks of the machine so far (/proc/stat): the time the host gave our
    virtual CPUs to others shows here, and every figure of a level with much of it is slower."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(fields[:8]), fields[7]


def reference_work_ms() -> float:
    """Wall time of a fixed piece of pure-Python work, best of five: how fast this host runs now
    (the same code measured hours apart on this VM differed by up to three times)."""
    times = []
    for _ in range(5):
        began = time.perf_counter()
        total = 0
        for i in range(200_000):
            total += i * i % 7
        times.append((time.perf_counter() - began) * 1000)
    return min(times)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return (
        ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")
    )


async def level(
    base_url: str, plan, physicians: int, index: int, seconds: float, seed: int, server_pid: int
) -> Recorder:
    recorder = Recorder()
    logins = sorted(plan)[:physicians]
    rng = random.Random(seed)
    ready = 0
    go = asyncio.Event()
    deadline: list[float] = []

    async def start_line() -> float:
        nonlocal ready
        ready += 1
        if ready == len(logins):
            deadline.append(time.monotonic() + seconds)
            recorder.cpu = cpu_seconds(server_pid)  # from here on: logins and page loads are done
            go.set()
        await go.wait()
        return deadline[0]

    tasks = []
    for login in logins:
        set_id, text = plan[login][index]
        tasks.append(
            physician(base_url, login, set_id, text, start_line, random.Random(rng.random()), recorder)
        )
    await asyncio.gather(*tasks)
    recorder.cpu = {kind: seconds - recorder.cpu[kind] for kind, seconds in cpu_seconds(server_pid).items()}
    return recorder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8941)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="play each level this many times")
    args = parser.parse_args()
    asked = args.levels
    args.levels = [physicians for physicians in asked for _ in range(args.repeat)]
    p99s: dict[int, list[float]] = {}

    data_dir = Path(tempfile.mkdtemp(prefix="clinann-load-bench-"))
    runtime = open_runtime(Settings(data_dir=data_dir, secret_key="load-bench"))
    server = None
    try:
        plan = seed(runtime, max(args.levels), len(args.levels))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLINANN_")}
        env.update(CLINANN_DATABASE_URL=runtime.database.url, CLINANN_SECRET_KEY="load-bench",
                   CLINANN_DATA_DIR=str(data_dir), CLINANN_LOG_LEVEL="warning")  # fmt: skip
        # The server's log goes to a file (a pipe nobody reads would block the server once full).
        server_log = open(data_dir / "server.log", "wb")  # noqa: SIM115 (closed with the server)
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--workers", str(args.workers), "--no-worker",
             "--host", "127.0.0.1", "--port", str(args.port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=server_log,
        )  # fmt: skip
        base_url = f"http://127.0.0.1:{args.port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base_url}/login", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.25)
        print(f"server: clinann serve --workers {args.workers} (uvicorn), PostgreSQL embedded; "
              f"{os.cpu_count()} CPU(s); {args.seconds:.0f} s per level")  # fmt: skip
        # The load generator's own objects (50-200 physicians' clients) are long-lived: keep its
        # collector's full passes from stalling every response it is timing.
        gc.collect()
        gc.freeze()
        for index, physicians in enumerate(args.levels):
            reference = reference_work_ms()
            ticks_before = cpu_ticks()
            recorder = run_async(
                level(base_url, plan, physicians, index, args.seconds, args.seed + index, server.pid)
            )
            ticks_after = cpu_ticks()
            stolen = (ticks_after[1] - ticks_before[1]) / max(1, ticks_after[0] - ticks_before[0])
            edits = recorder.edits
            print(
                f"{physicians:4d} physicians: {len(edits):6,} edits ({len(edits) / args.seconds:5.1f}/s); "
                f"edit round trip p50 {percentile(edits, 50):6.1f} ms, p95 {percentile(edits, 95):6.1f} ms, "
                f"p99 {percentile(edits, 99):6.1f} ms, max {max(edits, default=float('nan')):6.1f} ms; "
                f"time events p99 {percentile(recorder.events, 99):6.1f} ms; submits p99 "
                f"{percentile(recorder.submits, 99):6.1f} ms; errors {len(recorder.errors)}; "
                f"resent after a dropped connection {recorder.retried}"
                + (f" ({', '.join(sorted(set(recorder.errors)))})" if recorder.errors else "")
            )
            if os.environ.get("LOAD_BENCH_TRACE"):
                print("server times in order:", [round(x) for x in recorder.server])
            if edits:
                server_ms = recorder.server
                print(f"       mean {statistics.mean(edits):.1f} ms; server time per edit p50 "
                      f"{percentile(server_ms, 50):.1f} ms, p95 {percentile(server_ms, 95):.1f} ms, "
                      f"p99 {percentile(server_ms, 99):.1f} ms; after each physician's first 3 edits: "
                      f"p50 {percentile(recorder.steady, 50):.1f} ms, "
                      f"p95 {percentile(recorder.steady, 95):.1f} ms, "
                      f"p99 {percentile(recorder.steady, 99):.1f} ms")  # fmt: skip
                p99s.setdefault(physicians, []).append(percentile(edits, 99))
                requests = len(edits) + len(recorder.submits) + len(recorder.events)
                print("       CPU per request while physicians edit: " + ", ".join(
                    f"{kind} {seconds * 1000 / requests:.1f} ms" for kind, seconds in recorder.cpu.items()
                ))  # fmt: skip
                print(f"       host: reference work {reference:.1f} ms before the level; "
                      f"CPU time stolen by the host during it {stolen:.0%}")  # fmt: skip
        if args.repeat > 1:
            for physicians, values in p99s.items():
                print(f"{physicians:4d} physicians, {len(values)} runs: edit round trip p99 "
                      + ", ".join(f"{v:.1f}" for v in values)
                      + f" ms; median {statistics.median(values):.1f} ms")  # fmt: skip
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
            server_log.close()
            log_text = (data_dir / "server.log").read_text(errors="replace").strip()
            if log_text:
                print("server log (last lines):\n" + "\n".join(log_text.splitlines()[-15:]))
        runtime.close()


if __name__ == "__main__":
    main()
