"""Alembic's environment: migrations run on the connection store.engine.migrate hands over, never from an
alembic.ini (the URL is the run's --db). Each revision states its own operations; none reads store/tables.py,
which tests/store/test_migrations.py compares with a store the migrations made."""

from alembic import context

context.configure(connection=context.config.attributes["connection"])
with context.begin_transaction():
    context.run_migrations()
