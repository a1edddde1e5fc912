"""LLM pre-annotation benchmark: chunks per second through the real pipeline, and its CPU per chunk.

The real pipeline (start_run, then the job pre_annotate_note per note: claim, chunk, prompt, ask
through ChatClient, resolve, write the set) against the fake OpenAI-compatible server on loopback,
with embedded PostgreSQL. Notes run as a worker runs them: many at once (``--notes-in-flight``) on
one event loop, so that the endpoint's semaphore (max_concurrency 16) should be the limit. Target:
>= 90% of 16 / 0.3 s = 48 chunks/s with 300 ms latency. Then, with latency 0, the pipeline's own
CPU time per chunk, end to end and split by stage, and the pure-domain figure replayed on the
recorded answers.

    .venv/bin/python bench/llm_bench.py [--copies 2] [--notes-in-flight 8] [--diagnose]
"""

import argparse
import asyncio
import functools
import json
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

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
    build_messages,
    examples_from_note,
    prompt_fingerprint,
    response_format,
    select_examples,
)
from app.domain.resolver import resolve_direct_chunk, resolve_iob_token  # noqa: E402
from app.domain.vocabulary import SetOrigin  # noqa: E402
from app.llm import fake_server  # noqa: E402
from app.llm.fake_server import FakeBehaviour, FakeLlmServer, GoldNote  # noqa: E402
from app.runtime import open_runtime  # noqa: E402
from app.services import pre_annotation  # noqa: E402
from app.services.llm_endpoints import EndpointForm, save_endpoint  # noqa: E402
from app.settings import Settings  # noqa: E402

MAX_CONCURRENCY = 16
LATENCY_MS = 300
TARGET = 0.9 * MAX_CONCURRENCY / (LATENCY_MS / 1000)  # 48 chunks/s at 90% = 43.2
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

        return timed


STAGES = StageTimes()
FAKE_CPU = {"seconds": 0.0}  # thread CPU of the fake's request handlers (do_POST), all threads
_fake_lock = threading.Lock()


def instrument() -> None:
    """Wrap the sync stages of pre_annotate_note, and the fake server's request handler."""
    for name in ("claim_note", "finish_note", "_example_pool", "chunk_note", "select_examples"):
        setattr(pre_annotation, name, STAGES.wrap(name, getattr(pre_annotation, name)))
    for name in ("build_messages", "prompt_fingerprint", "_ensemble_by_chunk"):
        setattr(pre_annotation, name, STAGES.wrap(name, getattr(pre_annotation, name)))
    for schema, resolver in list(pre_annotation._RESOLVERS.items()):
        pre_annotation._RESOLVERS[schema] = STAGES.wrap(f"resolve {schema}", resolver)
    cache = pre_annotation.ResponseCache
    cache.get = STAGES.wrap("cache get (DB read)", cache.get)
    cache.put = STAGES.wrap("cache put (DB write)", cache.put)
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
    if any(o != "done" for o in outcomes) or any(s != "succeeded" for s in statuses):
        raise SystemExit(f"{label}: notes {sorted(set(outcomes))}, runs {sorted(set(statuses))}")
    chunks = fake.request_count
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
        "stages": {k: (STAGES.wall[k], STAGES.cpu[k], STAGES.calls[k]) for k in STAGES.wall},
    }


def print_throughput(result: dict) -> None:
    share = result["blocked"] / result["wall"]
    verdict = "ok" if result["chunks_per_s"] >= TARGET else "BELOW TARGET"
    print(
        f"  {result['label']:<22} {result['notes']:>3} notes {result['chunks']:>5} chunks "
        f"{result['wall']:6.1f} s  {result['chunks_per_s']:5.1f} chunks/s  [{verdict}]  "
        f"in flight mean {result['mean_in_flight']:4.1f} max {result['max_in_flight']:>2}  "
        f"loop busy in sync stages {share:4.0%}  loop-thread CPU {result['loop_cpu'] / result['wall']:4.0%}"
    )


def print_stages(result: dict) -> None:
    chunks = result["chunks"]
    print(f"  stages inside the pipeline ({result['label']}), per chunk; all of them block the event loop:")
    for name, (wall, cpu, calls) in sorted(result["stages"].items(), key=lambda kv: -kv[1][0]):
        print(
            f"    {name:<22} {calls:>5} calls  wall {wall / chunks * 1000:7.3f} ms  "
            f"loop-thread CPU {cpu / chunks * 1000:7.3f} ms"
        )


# ---------------------------------------------------------------------------------------------
# the pure-domain replay on the recorded answers


def replay_domain(sessions, result: dict, repeats: int = 3) -> dict[str, float]:
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
                pool = (
                    pre_annotation._example_pool(db, run.project_id, document_id, configuration)
                    if configuration.get("few_shot")
                    else []
                )
                notes.append((configuration, schema, note_text, records, pool))
        gold = gold_notes(sessions, db.scalar(select(Project.id).order_by(Project.id)))
    chunks = sum(len(records) for *_, records, _ in notes)
    few_shot = notes[0][0].get("few_shot", 0)
    size = min(notes[0][0]["chunk_sizes"].values())
    times: dict[str, float] = defaultdict(float)
    for _ in range(repeats):
        if few_shot:
            # Every note's claim cuts the project's gold notes into candidate examples again.
            started = time.process_time()
            for _note in notes:
                for g in gold:
                    examples_from_note(g.text, g.spans, g.relations, size)
            times["few-shot pool (examples_from_note)"] += time.process_time() - started
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
            for prompt_schema, chunk, fmt in built:
                examples = select_examples(chunk.text, pool, k)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=2, help="sets of the 22 demo notes (projects)")
    parser.add_argument("--notes-in-flight", type=int, default=8, help="notes a worker runs at once")
    parser.add_argument("--diagnose", action="store_true", help="also vary the notes in flight")
    args = parser.parse_args()
    wall_started = time.perf_counter()
    runtime = open_runtime(
        Settings(database_url=None, data_dir=Path(tempfile.mkdtemp(prefix="clinann-bench-")), secret_key="bench")
    )
    instrument()
    summary: dict = {"target_chunks_per_s": TARGET, "notes_in_flight": args.notes_in_flight}
    try:
        sessions = runtime.sessions
        projects = seed_projects(sessions, args.copies)
        with sessions() as db:
            schema = parse_label_schema(db.get(Project, projects[0]).label_schema)
        notes = gold_notes(sessions, projects[0])
        with FakeLlmServer(notes, schema, FakeBehaviour(latency_ms=LATENCY_MS)) as fake:
            print(
                f"{len(projects)} x {len(notes)} demo notes, fake LLM on loopback, endpoint max_concurrency "
                f"{MAX_CONCURRENCY}, {args.notes_in_flight} notes in flight on one event loop"
            )
            print(
                f"1. throughput at {LATENCY_MS} ms latency (target >= {TARGET:.1f} chunks/s = 90% of "
                f"{MAX_CONCURRENCY}/{LATENCY_MS / 1000:g} s); chunks = chat requests the fake received"
            )
            throughput = {}
            for prompt_schema in ("direct_chunk", "ensemble"):
                for few_shot in (0, 3):
                    label = f"{prompt_schema}-fs{few_shot}"
                    result = measure(
                        runtime, fake, projects, prompt_schema=prompt_schema, few_shot=few_shot,
                        latency_ms=LATENCY_MS, in_flight=args.notes_in_flight, label=label,
                    )  # fmt: skip
                    print_throughput(result)
                    throughput[label] = result
            summary["chunks_per_s"] = {k: round(r["chunks_per_s"], 1) for k, r in throughput.items()}
            summary["meets_target"] = all(r["chunks_per_s"] >= TARGET for r in throughput.values())
            if args.diagnose:
                print("   diagnosis: direct_chunk few_shot 3, varying the notes in flight")
                for in_flight in (2, 32):
                    result = measure(
                        runtime, fake, projects, prompt_schema="direct_chunk", few_shot=3,
                        latency_ms=LATENCY_MS, in_flight=in_flight, label=f"direct-fs3-notes{in_flight}",
                    )  # fmt: skip
                    print_throughput(result)
                    summary.setdefault("diagnose_chunks_per_s", {})[in_flight] = round(result["chunks_per_s"], 1)
            for label in ("direct_chunk-fs3", "ensemble-fs3"):
                print_stages(throughput[label])

            print("2. CPU per chunk at 0 ms latency (the fake server runs in this process: its CPU is included)")
            summary["cpu_ms_per_chunk"] = {}
            summary["domain_cpu_ms_per_chunk"] = {}
            for prompt_schema, few_shot in (("direct_chunk", 3), ("ensemble", 3), ("ensemble", 0)):
                label = f"cpu-{prompt_schema}-fs{few_shot}"
                result = measure(
                    runtime, fake, projects, prompt_schema=prompt_schema, few_shot=few_shot,
                    latency_ms=0, in_flight=args.notes_in_flight, label=label,
                )  # fmt: skip
                n = result["chunks"]
                per = {
                    "process": result["cpu"] / n * 1000,
                    "fake_server_handlers": result["fake_cpu"] / n * 1000,
                    "loop_thread": result["loop_cpu"] / n * 1000,
                    "postgres_backends": result["pg_cpu"] / n * 1000,
                }
                print(
                    f"  {label:<22} {n:>5} chunks in {result['wall']:5.1f} s = {n / result['wall']:5.0f} "
                    f"chunks/s; CPU per chunk: process {per['process']:.2f} ms (of which the fake's request "
                    f"handlers {per['fake_server_handlers']:.2f} ms; event-loop thread {per['loop_thread']:.2f} "
                    f"ms), PostgreSQL backends {per['postgres_backends']:.2f} ms"
                )
                print_stages(result)
                domain = replay_domain(sessions, result)
                total = sum(domain.values())
                print(f"  pure domain replay on the recorded answers ({label}), CPU per chunk {total * 1000:.3f} ms:")
                for name, seconds in domain.items():
                    print(f"    {name:<38} {seconds * 1000:7.3f} ms")
                db_stages = ("claim_note", "finish_note", "cache get (DB read)", "cache put (DB write)")
                per["db_stages_loop_thread"] = sum(result["stages"][s][1] for s in db_stages if s in result["stages"]) / n * 1000
                per["db_stages_wall"] = sum(result["stages"][s][0] for s in db_stages if s in result["stages"]) / n * 1000
                summary["cpu_ms_per_chunk"][label] = {k: round(v, 3) for k, v in per.items()}
                summary["domain_cpu_ms_per_chunk"][label] = round(total * 1000, 3)
    finally:
        runtime.close()
    print(f"(benchmark took {time.perf_counter() - wall_started:.0f} s)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
