"""A throwaway PostgreSQL on 127.0.0.1 for the tests (bench/pg_server.py): one server per test session, a
fresh database per test. Skipped, saying why, where PostgreSQL's binaries are not installed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.pg_server import NoPostgres, new_database, throwaway_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The server's URL without a database name."""
    pytest.importorskip("psycopg", reason="psycopg is missing: pip install -e '.[scale]'")
    try:
        with throwaway_server() as url:
            yield url
    except NoPostgres as err:
        pytest.skip(str(err))


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server."""
    return new_database(postgres_server)
