"""Alembic environment: runs online against the URL put in the config by app.db.migrate."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from app.db import models  # noqa: F401  (registers every table on the metadata)
from app.db.base import Base

config = context.config
target_metadata = Base.metadata


def include_name(name, type_, parent_names):
    # procrastinate's tables are made by our migrations from its own schema file, not from models.
    if type_ == "table" and name and name.startswith("procrastinate_"):
        return False
    return True


def run_migrations_online() -> None:
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_name=include_name,
            compare_type=True,
            compare_server_default=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("clinann migrations run online only: `clinann db upgrade`")
run_migrations_online()
