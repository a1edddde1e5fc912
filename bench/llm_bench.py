"""LLM pre-annotation benchmark: chunks per second through the real pipeline, and its CPU per chunk.

The real pipeline (start_run, then the job pre_annotate_note per note: claim, chunk, prompt, ask
through ChatClient, resolve, write the set) against the fake OpenAI-compatible server on loopback,
with embedded PostgreSQL. For the throughput figures the fake runs in a process of its own
(`clinann fake-llm`), as a real endpoint would; for the CPU figures it runs in this process.
Notes run as a worker runs them: many at once (``--notes-in-flight``) on one event loop, so that
the endpoint's semaphore (max_concurrency 16) should be the limit. Target:
>= 48 chunks/s (90% of 16 / 0.3 s) with 300 ms latency. Then, with latency 0, the pipeline's own
CPU time per chunk, end to end and split by stage, and the pure-domain figure replayed on the
recorded answers. The stages of the job are timed by wrapping their names from outside (the app
code is not changed); the database stages run in threads, so their wall time does not hold the loop.

    .venv/bin/python bench/llm_bench.py [--copies 2] [--notes-in-flight 8] [--diagnose]
"""

import argparse
import asyncio
import functools
import json
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpcore._synchronization as httpcore_sync
import httpx._transports.default as httpx_transport
import psutil
from sqlalchemy import select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.db.models import (  # noqa: E402
    AnnotationSet,
    Document,
    LlmEndpoint,
    PreAnnotationResult,
    PreAnnotationRun,
    Project,
)
from app.demo import seed  # noqa: E402
from app.domain.chunking import chunk_note  # noqa: E402
from app.domain.label_schema import parse_label_schema  # noqa: E402
from app.domain.prompts import (  # noqa: E402
    ExampleIndex,
    build_messages,
    examples_from_note,
    prompt_fingerprint,
    response_format,
)
from app.domain.resolver import resolve_direct_chunk, resolve_iob_token  # noqa: E402
from app.domain.vocabulary import SetOrigin  # noqa: E402
from app.llm import fake_server  # noqa: E402
from app.llm.client import ChatClient, EndpointConfig  # noqa: E402
from app.llm.fake_server import FakeBehaviour, FakeLlmServer, GoldNote  # noqa: E402
from app.runtime import open_runtime  # noqa: E402
from app.services import pre_annotation  # noqa: E402
from app.services.llm_endpoints import EndpointForm, save_endpoint  # noqa: E402
from app.settings import Settings  # noqa: E402

MAX_CONCURRENCY = 16
LATENCY_MS = 300
TARGET = 0.9 * MAX_CONCURRENCY / (LATENCY_MS / 1000)  # 48 chunks/s
RESOLVERS = {"iob_token": resolve_iob_token, "direct_chunk": resolve_direct_chunk}


# ---------------------------------------------------------------------------------------------
# timing the pipeline's stages from outside (the app code is not changed, its names are wrapped)


class StageTimes:
    """Wall and loop-thread CPU seconds per stage; the stages run synchronously on the event loop."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.depth = 0  # only the outermost wrapped call counts towards "blocked"
        self.blocked = 0.0
        self.blocked_cpu = 0.0

    def reset(self) -> None:
        self.__init__()

    def wrap(self, name: str, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            self.depth += 1
            try:
                return function(*args, **kwargs)
            finally:
                self.depth -= 1
                spent = time.perf_counter() - wall
                self.wall[name] += spent
                self.cpu[name] += time.thread_time() - cpu
                self.calls[name] += 1
                if self.depth == 0:
                    self.blocked += spent
                    self.blocked_cpu += time.thread_time() - cpu

        return timed


STAGES = StageTimes()
FAKE_CPU = {"seconds": 0.0}  # thread CPU of the fake's request handlers (do_POST), all threads
_fake_lock = threading.Lock()


def instrument() -> None:
    """Wrap the sync stages of pre_annotate_note, and the fake server's request handler."""
    for name in ("claim_note", "finish_note", "_example_pool", "chunk_note"):
        setattr(pre_annotation, name, STAGES.wrap(name, getattr(pre_annotation, name)))
    pre_annotation.ExampleIndex.select = STAGES.wrap("select_examples", pre_annotation.ExampleIndex.select)
    for name in ("build_messages", "prompt_fingerprint", "_ensemble_by_chunk"):
        setattr(pre_annotation, name, STAGES.wrap(name, getattr(pre_annotation, name)))
    for schema, resolver in list(pre_annotation._RESOLVERS.items()):
        pre_annotation._RESOLVERS[schema] = STAGES.wrap(f"resolve {schema}", resolver)
    cache = pre_annotation.ResponseCache
    cache.get_many = STAGES.wrap("cache get (DB read)", cache.get_many)
    cache.put = STAGES.wrap("cache put (DB write)", cache.put)
    # Inside the HTTP client: httpcore asks which async library runs it several times per request,
    # trying `import sniffio` each time (a failed import searches sys.path when sniffio is absent);
    # every ChatClient (one per note) builds an SSL context even for http:// endpoints.
    httpcore_sync.current_async_library = STAGES.wrap(
        "httpcore async-library probe", httpcore_sync.current_async_library
    )
    httpx_transport.create_ssl_context = STAGES.wrap("httpx SSL context", httpx_transport.create_ssl_context)
    handler = fake_server._Handler
    original = handler.do_POST

    def do_post(self):
        started = time.thread_time()
        try:
            original(self)
        finally:
            with _fake_lock:
                FAKE_CPU["seconds"] += time.thread_time() - started

    handler.do_POST = do_post


def postgres_cpu(runtime) -> float:
    """CPU seconds used so far by the PostgreSQL backends alive now (the pool's connections)."""
    with runtime.engine.connect() as connection:
        pids = list(connection.execute(text("SELECT pid FROM pg_stat_activity")).scalars())
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


# ---------------------------------------------------------------------------------------------
# data


def seed_projects(sessions, copies: int) -> list[int]:
    """The demo project and copies of it: the same notes and gold, guidelines differing by one line.

    The response cache is keyed by model and messages, so a note copied inside one project would be
    answered from the cache; a copy in its own project has its own system message, hence its own
    prompts, while the fake server still answers it from the same gold.
    """
    names, guidelines = seed.DEMO_PROJECT, seed.GUIDELINES
    try:
        for copy in range(copies):
            if copy:
                seed.DEMO_PROJECT = f"{names} (benchmark copy {copy})"
                seed.GUIDELINES = f"{guidelines}\nBenchmark copy {copy}."
            seed.seed_demo(sessions)
    finally:
        seed.DEMO_PROJECT, seed.GUIDELINES = names, guidelines
    with sessions() as db:
        return list(db.scalars(select(Project.id).where(Project.name.like(f"{names}%")).order_by(Project.id)))


def gold_notes(sessions, project_id: int) -> list[GoldNote]:
    """The project's gold as the fake server's corpus (as tests/services/test_pre_annotation.py)."""
    notes = []
    with sessions() as db:
        sets = db.execute(
            select(AnnotationSet.id, Document.text)
            .join(Document, Document.id == AnnotationSet.document_id)
            .where(Document.project_id == project_id, AnnotationSet.origin == SetOrigin.gold.value)
            .order_by(Document.id)
        ).all()
        for set_id, note_text in sets:
            spans, relations = pre_annotation._set_contents(db, set_id)
            notes.append(GoldNote(note_text, spans, relations))
    return notes


def make_endpoint(sessions, base_url: str, model: str) -> int:
    """An endpoint per measurement: its own model name, so its prompts are not in the response cache."""
    endpoint_id = save_endpoint(
        sessions,
        EndpointForm(name=model, base_url=base_url, model=model, max_concurrency=MAX_CONCURRENCY),
        user_id=None,
    )
    with sessions.begin() as db:
        row = db.get(LlmEndpoint, endpoint_id)
        row.parameters = {
            **row.parameters,
            "max_concurrency": MAX_CONCURRENCY,
            "backoff_seconds": 0.05,
            "max_attempts": 4,
            "timeout_seconds": 30.0,
        }
    return endpoint_id


def expected_requests(sessions, projects: list[int], prompt_schema: str) -> int:
    """Chat requests a run must send when nothing is cached: one per chunk and prompt schema."""
    schemas = ["iob_token", "direct_chunk"] if prompt_schema == "ensemble" else [prompt_schema]
    with sessions() as db:
        texts = list(db.scalars(select(Document.text).where(Document.project_id.in_(projects))))
    return sum(len(chunk_note(t, pre_annotation.DEFAULT_CHUNK_SIZE[s])) for t in texts for s in schemas)


class RemoteFake:
    """The fake LLM in a process of its own (`clinann fake-llm`), as a real endpoint would be: it
    does not share this process's interpreter lock. Requests are counted from what the runs stored."""

    def __init__(self, latency_ms: float) -> None:
        import subprocess

        gold = Path(__file__).resolve().parent.parent / "app" / "demo" / "notes"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.llm.fake_server",
                "--gold",
                str(gold),
                "--latency-ms",
                str(latency_ms),
            ],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base_url = self.process.stdout.readline().strip()
        self.behaviour = FakeBehaviour(latency_ms=latency_ms)
        self.max_in_flight = None

    def reset(self) -> None:
        pass

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# ---------------------------------------------------------------------------------------------
# one measurement


async def run_notes(sessions, jobs: list[tuple[int, int]], in_flight: int) -> list[str]:
    """The jobs as a worker runs them: all on one loop, at most ``in_flight`` notes at a time."""
    gate = asyncio.Semaphore(in_flight)

    async def one(run_id: int, document_id: int) -> str:
        async with gate:
            return await pre_annotation.pre_annotate_note(sessions, run_id, document_id)

    return await asyncio.gather(*(one(*job) for job in jobs))


def measure(runtime, fake, projects, *, prompt_schema, few_shot, latency_ms, in_flight, label) -> dict:
    sessions = runtime.sessions
    remote = isinstance(fake, RemoteFake)
    if remote and latency_ms != fake.behaviour.latency_ms:
        raise ValueError("a fake in its own process keeps the latency it was started with")
    fake.behaviour.latency_ms = latency_ms
    fake.reset()
    endpoint_id = make_endpoint(sessions, fake.base_url, f"bench-{label}")
    jobs: list[tuple[int, int]] = []
    run_ids = []
    for project_id in projects:
        run_ids.append(
            pre_annotation.start_run(
                sessions,
                project_id,
                pre_annotation.RunRequest(
                    name=label, prompt_schema=prompt_schema, endpoint_id=endpoint_id, few_shot=few_shot
                ),
                user_id=None,
                defer=lambda _task, **job: jobs.append((job["run_id"], job["document_id"])),
            )
        )
    STAGES.reset()
    FAKE_CPU["seconds"] = 0.0
    pg_before = postgres_cpu(runtime)
    wall, cpu, loop_cpu = time.perf_counter(), time.process_time(), time.thread_time()
    outcomes = asyncio.run(run_notes(sessions, jobs, in_flight))
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    loop_cpu = time.thread_time() - loop_cpu
    pg_cpu = postgres_cpu(runtime) - pg_before
    with sessions() as db:
        statuses = list(db.scalars(select(PreAnnotationRun.status).where(PreAnnotationRun.id.in_(run_ids))))
        records = db.scalars(
            select(PreAnnotationResult.raw_outputs).where(PreAnnotationResult.run_id.in_(run_ids))
        )
        # The client's latency: from the endpoint semaphore's admission to the parsed answer.
        held = [r["latency_ms"] for rs in records for r in rs if not r.get("cached")]
        asked = sum(r.get("attempts", 1) for rs in db.scalars(
            select(PreAnnotationResult.raw_outputs).where(PreAnnotationResult.run_id.in_(run_ids))
        ) for r in rs if not r.get("cached"))  # fmt: skip
    if any(o != "done" for o in outcomes) or any(s != "succeeded" for s in statuses):
        raise SystemExit(f"{label}: notes {sorted(set(outcomes))}, runs {sorted(set(statuses))}")
    chunks = asked if remote else fake.request_count
    expected = expected_requests(sessions, projects, prompt_schema)
    if chunks != expected:
        print(f"  !! {label}: {chunks} requests but {expected} chunks: some prompts came from the cache")
    return {
        "label": label,
        "run_ids": run_ids,
        "notes": len(jobs),
        "chunks": chunks,
        "wall": wall,
        "cpu": cpu,
        "loop_cpu": loop_cpu,
        "pg_cpu": pg_cpu,
        "fake_cpu": FAKE_CPU["seconds"],
        "max_in_flight": fake.max_in_flight,
        "chunks_per_s": chunks / wall,
        # Little's law at the server: requests in flight on average = rate x time each is held.
        "mean_in_flight": chunks * (latency_ms / 1000) / wall if latency_ms else None,
        "blocked": STAGES.blocked,
        "blocked_cpu": STAGES.blocked_cpu,
        "slot_held_ms": sum(held) / len(held) if held else 0.0,
        "stages": {k: (STAGES.wall[k], STAGES.cpu[k], STAGES.calls[k]) for k in STAGES.wall},
    }


def print_throughput(result: dict) -> None:
    share = result["blocked"] / result["wall"]
    verdict = "ok" if result["chunks_per_s"] >= TARGET else "BELOW TARGET"
    print(
        f"  {result['label']:<22} {result['notes']:>3} notes {result['chunks']:>5} chunks "
        f"{result['wall']:6.1f} s  {result['chunks_per_s']:5.1f} chunks/s  [{verdict}]  "
        f"in flight mean {result['mean_in_flight']:4.1f} max {result['max_in_flight'] or 'n/a':>3}  "
        f"slot held {result['slot_held_ms']:4.0f} ms  "
        f"loop busy in sync stages {share:4.0%}  loop-thread CPU {result['loop_cpu'] / result['wall']:4.0%}"
    )


def print_stages(result: dict) -> None:
    chunks = result["chunks"]
    print(f"  stages inside the pipeline ({result['label']}), per chunk (database stages run in threads):")
    for name, (wall, cpu, calls) in sorted(result["stages"].items(), key=lambda kv: -kv[1][0]):
        print(
            f"    {name:<22} {calls:>5} calls  wall {wall / chunks * 1000:7.3f} ms  "
            f"loop-thread CPU {cpu / chunks * 1000:7.3f} ms"
        )


# ---------------------------------------------------------------------------------------------
# the pure-domain replay on the recorded answers


def replay_domain(sessions, result: dict, repeats: int = 1) -> dict[str, float]:
    """CPU seconds per chunk of the domain functions alone, on the run's notes and recorded answers."""
    notes = []
    with sessions() as db:
        for run_id in result["run_ids"]:
            run = db.get(PreAnnotationRun, run_id)
            configuration = run.configuration
            schema = parse_label_schema(configuration["label_schema"])
            rows = db.execute(
                select(PreAnnotationResult.document_id, PreAnnotationResult.raw_outputs, Document.text)
                .join(Document, Document.id == PreAnnotationResult.document_id)
                .where(PreAnnotationResult.run_id == run_id)
                .order_by(Document.id)
            ).all()
            for document_id, records, note_text in rows:
                pool = []
                if configuration.get("few_shot"):
                    index, sources = pre_annotation._example_pool(db, run_id, configuration)
                    pool = [
                        c
                        for c, source in zip(index.candidates, sources, strict=True)
                        if source != document_id
                    ]
                notes.append((configuration, schema, note_text, records, pool))
        gold = gold_notes(sessions, db.scalar(select(Project.id).order_by(Project.id)))
    chunks = sum(len(records) for *_, records, _ in notes)
    few_shot = notes[0][0].get("few_shot", 0)
    size = min(notes[0][0]["chunk_sizes"].values())
    times: dict[str, float] = defaultdict(float)
    for _ in range(repeats):
        if few_shot:
            # The run's gold notes are cut into candidate examples once per worker (the pool is kept).
            started = time.process_time()
            for g in gold:
                examples_from_note(g.text, g.spans, g.relations, size)
            times["few-shot pool (examples_from_note, once per run)"] += time.process_time() - started
        for configuration, schema, note_text, records, pool in notes:
            k = configuration.get("few_shot", 0)
            started = time.process_time()
            built = []
            for prompt_schema in configuration["schemas"]:
                fmt = response_format(prompt_schema, schema)
                for chunk in chunk_note(note_text, configuration["chunk_sizes"][prompt_schema]):
                    built.append((prompt_schema, chunk, fmt))
            times["chunking"] += time.process_time() - started
            started = time.process_time()
            prompts = []
            index = ExampleIndex(pool)  # prepared once per run in the worker; here once per note
            for prompt_schema, chunk, fmt in built:
                examples = index.select(chunk.text, k)
                prompts.append((prompt_schema, chunk, fmt, examples))
            times["few-shot selection (select_examples)"] += time.process_time() - started
            started = time.process_time()
            for prompt_schema, chunk, fmt, examples in prompts:
                messages = build_messages(
                    schema, configuration.get("guidelines", ""), prompt_schema, chunk.text, examples,
                    structured=True,
                )  # fmt: skip
                prompt_fingerprint(configuration["endpoint"]["model"], messages, fmt)
            times["prompt building + fingerprint"] += time.process_time() - started
            started = time.process_time()
            per_schema: dict[str, list] = defaultdict(list)
            for record in records:
                start, end = record["chunk"]
                resolved = RESOLVERS[record["prompt_schema"]](
                    record["output"], note_text[start:end], schema, configuration["fuzzy_threshold"]
                )
                per_schema[record["prompt_schema"]].append((start, resolved, record))
            times["resolving"] += time.process_time() - started
            if len(configuration["schemas"]) == 2:
                work = pre_annotation.NoteWork(0, 0, note_text, schema, configuration)
                started = time.process_time()
                pre_annotation._ensemble_by_chunk(per_schema["iob_token"], per_schema["direct_chunk"], work)
                times["ensemble merge"] += time.process_time() - started
    return {name: seconds / repeats / chunks for name, seconds in times.items()}


# ---------------------------------------------------------------------------------------------
# the harness alone: the fake server and the HTTP client, without the pipeline


async def _bare_requests(base_url: str, schema, n: int) -> tuple[float, float]:
    config = EndpointConfig(
        base_url=base_url, model="bench-bare", api_key=None, max_concurrency=MAX_CONCURRENCY
    )
    held: list[float] = []
    async with ChatClient(config) as client:

        async def one(i: int) -> None:
            messages = build_messages(
                schema, "", "direct_chunk", f"Aspirin {i} mg by mouth daily.", [], structured=True
            )
            held.append((await client.complete(messages)).latency_ms)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started), sum(held) / len(held)


def harness_ceiling(fake: FakeLlmServer, schema, n: int = 160) -> dict[str, float]:
    """Requests/s of one ChatClient alone (16 at a time, tiny prompts), with the fake as it is and
    with TCP_NODELAY on its sockets: it writes headers and body in two sends, so Nagle's algorithm
    holds the body until the client's delayed ACK (about 40 ms on Linux)."""
    fake.behaviour.latency_ms = LATENCY_MS
    rates = {}
    as_shipped = fake_server._Handler.disable_nagle_algorithm
    for nodelay in (False, True):
        fake_server._Handler.disable_nagle_algorithm = nodelay
        rate, held = asyncio.run(_bare_requests(fake.base_url, schema, n))
        rates["nodelay" if nodelay else "as_is"] = round(rate, 1)
        print(
            f"  client + fake alone{' (fake with TCP_NODELAY)' if nodelay else ''}: {rate:5.1f} requests/s, "
            f"mean {held:4.0f} ms per request at {LATENCY_MS} ms latency"
        )
    fake_server._Handler.disable_nagle_algorithm = as_shipped  # the pipeline meets the fake as it ships
    return rates


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=2, help="sets of the 22 demo notes (projects)")
    parser.add_argument("--notes-in-flight", type=int, default=8, help="notes a worker runs at once")
    parser.add_argument("--diagnose", action="store_true", help="also vary the notes in flight (2, 32)")
    args = parser.parse_args()
    wall_started = time.perf_counter()
    data_dir = Path(tempfile.mkdtemp(prefix="clinann-bench-"))
    runtime = open_runtime(Settings(database_url=None, data_dir=data_dir, secret_key="bench"))
    instrument()
    summary: dict = {"target_chunks_per_s": TARGET, "notes_in_flight": args.notes_in_flight}
    try:
        sessions = runtime.sessions
        projects = seed_projects(sessions, args.copies)
        with sessions() as db:
            schema = parse_label_schema(db.get(Project, projects[0]).label_schema)
        notes = gold_notes(sessions, projects[0])
        print(
            f"(database started, {len(projects)} projects seeded: {time.perf_counter() - wall_started:.0f} s)"
        )
        with FakeLlmServer(notes, schema, FakeBehaviour(latency_ms=LATENCY_MS)) as fake:
            print(
                f"{len(projects)} x {len(notes)} demo notes, fake LLM on loopback (a thread of this "
                f"process), endpoint max_concurrency {MAX_CONCURRENCY}, {args.notes_in_flight} notes in "
                "flight on one event loop"
            )
            print(
                f"1. throughput at {LATENCY_MS} ms latency (target >= {TARGET:.1f} chunks/s = 90% of "
                f"{MAX_CONCURRENCY}/{LATENCY_MS / 1000:g} s); chunks = chat requests the fake received"
            )
            summary["harness_requests_per_s"] = harness_ceiling(fake, schema)
            throughput = {}
            remote = RemoteFake(LATENCY_MS)
            print(f"  the pipeline, against the fake in a process of its own ({remote.base_url}):")
            try:
                # Every note of every project, so that the ramp at the start and the tail at the end (a
                # few notes' last chunks) weigh little against the steady state being measured.
                for prompt_schema, covered in (("direct_chunk", projects), ("ensemble", projects)):
                    for few_shot in (0, 3):
                        label = f"{prompt_schema}-fs{few_shot}"
                        result = measure(
                            runtime, remote, covered, prompt_schema=prompt_schema, few_shot=few_shot,
                            latency_ms=LATENCY_MS, in_flight=args.notes_in_flight, label=label,
                        )  # fmt: skip
                        print_throughput(result)
                        throughput[label] = result
            finally:
                remote.stop()
            summary["chunks_per_s"] = {k: round(r["chunks_per_s"], 1) for k, r in throughput.items()}
            summary["slot_held_ms"] = {k: round(r["slot_held_ms"]) for k, r in throughput.items()}
            summary["loop_blocked_share"] = {
                k: round(r["blocked"] / r["wall"], 2) for k, r in throughput.items()
            }
            summary["meets_target"] = all(r["chunks_per_s"] >= TARGET for r in throughput.values())
            if args.diagnose:
                print("   diagnosis: direct_chunk few_shot 0, varying the notes in flight")
                for in_flight in (2, 32):
                    fake.behaviour.latency_ms = LATENCY_MS
                    result = measure(
                        runtime, fake, projects, prompt_schema="direct_chunk", few_shot=0,
                        latency_ms=LATENCY_MS, in_flight=in_flight, label=f"direct-fs0-notes{in_flight}",
                    )  # fmt: skip
                    print_throughput(result)
                    summary.setdefault("diagnose_chunks_per_s", {})[in_flight] = round(
                        result["chunks_per_s"], 1
                    )
            print_stages(throughput["ensemble-fs3"])

            print(
                "2. CPU per chunk at 0 ms latency, first project only. The fake server runs in this process, "
                "so the process figure includes its CPU (its request handlers' share is given)."
            )
            summary["cpu_ms_per_chunk"] = {}
            summary["domain_cpu_ms_per_chunk"] = {}
            for few_shot in (0, 3):
                label = f"cpu-ensemble-fs{few_shot}"
                result = measure(
                    runtime, fake, projects[:1], prompt_schema="ensemble", few_shot=few_shot,
                    latency_ms=0, in_flight=args.notes_in_flight, label=label,
                )  # fmt: skip
                summary["cpu_ms_per_chunk"][label] = print_cpu(result)
                domain = replay_domain(sessions, result)
                total = sum(domain.values())
                print(f"  pure domain, replayed on the recorded answers: {total * 1000:.3f} ms CPU per chunk")
                for name, seconds in domain.items():
                    print(f"    {name:<38} {seconds * 1000:7.3f} ms")
                summary["domain_cpu_ms_per_chunk"][label] = {k: round(v * 1000, 3) for k, v in domain.items()}
    finally:
        runtime.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"(benchmark took {time.perf_counter() - wall_started:.0f} s)")
    print(json.dumps(summary))


DB_STAGES = ("claim_note", "finish_note", "cache get (DB read)", "cache put (DB write)")


def print_cpu(result: dict) -> dict[str, float]:
    """Print and return the CPU per chunk (ms) of a latency-0 run, by where it was spent."""
    n = result["chunks"]
    stages = result["stages"]
    per = {
        "process": result["cpu"] / n * 1000,
        "fake_server_handlers": result["fake_cpu"] / n * 1000,
        "event_loop_thread": result["loop_cpu"] / n * 1000,
        "db_stages_loop_thread": sum(stages[s][1] for s in DB_STAGES if s in stages) / n * 1000,
        "db_stages_wall": sum(stages[s][0] for s in DB_STAGES if s in stages) / n * 1000,
        "loop_thread_outside_timed_stages": (result["loop_cpu"] - result["blocked_cpu"]) / n * 1000,
        "postgres_backends": result["pg_cpu"] / n * 1000,
    }
    print(
        f"  {result['label']}: {n} chunks in {result['wall']:.1f} s ({n / result['wall']:.0f} chunks/s). "
        f"CPU per chunk: process {per['process']:.2f} ms = event-loop thread "
        f"{per['event_loop_thread']:.2f} ms "
        f"+ fake's request handlers {per['fake_server_handlers']:.2f} ms + rest (fake's HTTP parsing, GC); "
        f"PostgreSQL backends (other processes) {per['postgres_backends']:.2f} ms"
    )
    print(
        f"    on the loop thread: DB stages {per['db_stages_loop_thread']:.2f} ms CPU "
        f"({per['db_stages_wall']:.2f} ms wall, the loop blocked), not in a timed stage (httpx, asyncio) "
        f"{per['loop_thread_outside_timed_stages']:.2f} ms"
    )
    print_stages(result)
    return {k: round(v, 3) for k, v in per.items()}


if __name__ == "__main__":
    main()
