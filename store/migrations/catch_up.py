"""What a revision that brings a store up to a release needs: the columns and indexes it lacks, added with
the types store/tables.py gives them (a column's type never changes; a new one is nullable or has a
default, so rows already there stay valid)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlmodel import SQLModel


def add_missing(columns: dict[str, list[str]], indexes: dict[str, list[str]] | None = None) -> None:
    """Adds each named column its table lacks (a table a store lacks entirely is created, as it is now), then
    each named index."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    present = set(inspector.get_table_names())
    for name, wanted in columns.items():
        table = SQLModel.metadata.tables[name]
        if name not in present:
            table.create(bind)
            continue
        have = {c["name"] for c in inspector.get_columns(name)}
        for column in wanted:
            if column not in have:
                model = table.columns[column]
                default = model.default.arg if model.default is not None and model.default.is_scalar else None
                server_default = sa.text(repr(default)) if isinstance(default, int | float | str) else None
                op.add_column(name, sa.Column(column, model.type, nullable=True, server_default=server_default))
    for name, wanted_indexes in (indexes or {}).items():
        have_indexes = {i["name"] for i in sa.inspect(bind).get_indexes(name)}
        for index in SQLModel.metadata.tables[name].indexes:
            if index.name in wanted_indexes and index.name not in have_indexes:
                index.create(bind)
