"""Alembic's environment: migrations run on the connection store.engine.migrate hands over, never from an
alembic.ini (the URL is the run's --db)."""

from alembic import context
from sqlmodel import SQLModel

from store import tables  # noqa: F401  (the tables the revisions compare against)

context.configure(connection=context.config.attributes["connection"], target_metadata=SQLModel.metadata)
with context.begin_transaction():
    context.run_migrations()
