"""Inserts through SQLAlchemy Core, for the rows the run loop writes many times a second (tool calls, charges,
artifacts, node events): the ORM's unit of work costs more than the statement itself there. insert_ignore keeps
a row already present (written by another episode, or before a crash)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.sql.dml import Insert
from sqlmodel import SQLModel

DIALECT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def with_defaults(model: type[SQLModel], values: dict[str, Any]) -> dict[str, Any]:
    """The values with the defaults the ORM would fill in (timestamps), for a Core insert."""
    filled = dict(values)
    for name, field in model.model_fields.items():
        if name not in filled and field.default_factory is not None:
            filled[name] = field.default_factory()  # type: ignore[call-arg]
    return filled


def insert_ignore(engine: Engine, model: type[SQLModel], **values: Any) -> None:
    """Insert one row unless one with the same key or unique columns exists; commits at once."""
    if engine.dialect.name not in DIALECT_INSERTS:  # any other database: the portable, slower way
        from sqlalchemy.exc import IntegrityError
        from sqlmodel import Session

        with Session(engine) as s:
            s.add(model(**values))
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
        return
    with engine.begin() as conn:  # the values as parameters, not .values(): one statement, built once
        conn.execute(ignoring_insert(engine.dialect.name, model), with_defaults(model, values))


@functools.cache
def ignoring_insert(dialect: str, model: type[SQLModel]) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING into the model's table; building it costs more than running it."""
    return DIALECT_INSERTS[dialect](model.__table__).on_conflict_do_nothing()  # type: ignore[attr-defined]
