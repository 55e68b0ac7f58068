"""INSERT ... ON CONFLICT DO NOTHING through SQLAlchemy Core, for the rows the run loop writes many times a
second (artifacts, node events): the ORM's unit of work costs more than the statement itself there, and a
row already present (written by another episode, or before a crash) is simply kept."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

DIALECT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def insert_ignore(engine: Engine, model: type[SQLModel], **values: Any) -> None:
    """Insert one row unless one with the same key or unique columns exists; commits at once."""
    insert = DIALECT_INSERTS.get(engine.dialect.name)
    if insert is None:  # any other database: the portable, slower way
        from sqlalchemy.exc import IntegrityError
        from sqlmodel import Session

        with Session(engine) as s:
            s.add(model(**values))
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
        return
    for name, field in model.model_fields.items():  # defaults the ORM would fill in (timestamps)
        if name not in values and field.default_factory is not None:
            values[name] = field.default_factory()  # type: ignore[call-arg]
    table = model.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(insert(table).values(**values).on_conflict_do_nothing())
