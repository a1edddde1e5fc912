"""The app for uvicorn's own worker processes (`clinann serve --workers N`).

Each worker process opens its own runtime (engine, pool, job queue) from the environment that
`clinann serve` prepared: the database URL it migrated, the data directory (its secret key) and
whether to run a job worker beside the web worker.
"""

import os

from app.runtime import open_runtime
from app.settings import Settings
from app.web.app import create_app, freeze_start_up_objects

JOB_WORKER_VARIABLE = "CLINANN_SERVE_JOB_WORKER"


def build():
    """uvicorn's factory: called once in each worker process."""
    runtime = open_runtime(Settings(), migrate=False)  # the parent migrated before starting workers
    app = create_app(runtime, run_worker=os.environ.get(JOB_WORKER_VARIABLE, "1") == "1")
    freeze_start_up_objects()
    return app
