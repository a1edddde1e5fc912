"""FastAPI traces through OpenTelemetry whenever a tracer provider is set up in the process, and an
exporter would send each request's route and failure to a collector. clinann sends nothing anywhere
but the configured LLM endpoint, so the app opts out whatever is installed or configured.

The check runs in a child process: a tracer provider is global to a process, once set.
"""

import subprocess
import sys
import textwrap

from app.settings import PROJECT_ROOT

CHILD = textwrap.dedent(
    """
    import contextlib, sys, tempfile
    from pathlib import Path
    from opentelemetry import trace
    from fastapi.testclient import TestClient

    started = []

    class RecordingTracer(trace.NoOpTracer):
        def start_span(self, name, *args, **kwargs):
            started.append(name)
            return super().start_span(name, *args, **kwargs)

        @contextlib.contextmanager
        def start_as_current_span(self, name, *args, **kwargs):
            started.append(name)
            yield trace.INVALID_SPAN

    class RecordingProvider(trace.TracerProvider):
        def get_tracer(self, *args, **kwargs):
            return RecordingTracer()

    trace.set_tracer_provider(RecordingProvider())  # as an agent or auto-configuration would

    from app.runtime import open_runtime
    from app.settings import Settings
    from app.web.app import create_app

    settings = Settings(database_url=sys.argv[1], data_dir=Path(tempfile.mkdtemp()), secret_key="t" * 32)
    runtime = open_runtime(settings, migrate=False)
    try:
        with TestClient(create_app(runtime, run_worker=False)) as client:
            answers = [client.get(path).status_code for path in ("/login", "/no-such-page")]
    finally:
        runtime.close()
    print(answers, len(started))
    """
)


def test_no_request_is_traced_even_with_a_tracer_provider_set_up(database_url):
    child = subprocess.run(
        [sys.executable, "-c", CHILD, database_url],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    # Both requests were served, and not one span was started for them.
    assert child.stdout.split("\n")[-2] == "[200, 404] 0", child.stdout
