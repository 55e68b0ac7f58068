"""What the first revision needs to bring a store made before migrations up to its release: the tables,
columns and indexes of a schema that the store lacks (a column added to a table that has rows is nullable, with
its default, so the rows stay valid)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def add_missing(schema: sa.MetaData) -> None:
    """Creates each table of `schema` the store lacks, then adds each column and index its tables lack."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    present = set(inspector.get_table_names())
    for table in schema.sorted_tables:
        if table.name not in present:
            table.create(bind)
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:
                default = column.server_default.arg if column.server_default is not None else None  # type: ignore[attr-defined]
                op.add_column(table.name, sa.Column(column.name, column.type, nullable=True, server_default=default))
        indexes = {i["name"] for i in sa.inspect(bind).get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(bind)
