"""Shared fixtures: hypothesis profiles, database URLs for the storage contract tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None)
settings.register_profile(
    "ci", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=20)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

PG_URL_VARIABLE = "RANTAI_TEST_PG_URL"


def _postgres_url() -> str | None:
    url = os.environ.get(PG_URL_VARIABLE)
    if url is None and os.environ.get("RANTAI_REQUIRE_PG") == "1":
        raise RuntimeError(f"RANTAI_REQUIRE_PG=1 but {PG_URL_VARIABLE} is not set")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh, empty database of each backend.

    PostgreSQL comes from ``RANTAI_TEST_PG_URL`` (``scripts/test`` starts a throwaway server and
    sets it, together with ``RANTAI_REQUIRE_PG=1`` so that a missing server fails the run
    instead of skipping).
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'node.db'}"
        return
    base = _postgres_url()
    if base is None:
        pytest.skip(f"{PG_URL_VARIABLE} not set (scripts/test sets it)")
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    head, _, _ = base.rpartition("/")
    yield f"{head}/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
