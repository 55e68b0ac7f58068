"""Schema migrations of the store (Alembic): store.engine runs them when a store is opened. A change to
store/tables.py comes with a revision in versions/ (op.add_column, op.create_index ...), and
tests/store/test_migrations.py opens a store of the release before it."""
