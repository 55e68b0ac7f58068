"""insert_ignore: a row written unless one with the same key is there already (written by another episode, or
before a crash), for the artifacts and node events the run loop writes many times a second."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
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
    insert = DIALECT_INSERTS[engine.dialect.name](model.__table__)  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(insert.values(with_defaults(model, values)).on_conflict_do_nothing())
