"""Shared fixtures. Database tests run twice: on SQLite and on a real PostgreSQL.

Each test gets a database of its own, copied from one migrated once per session with Alembic:
on SQLite a copy of the template file, on PostgreSQL a database cloned from the template
(CREATE DATABASE ... TEMPLATE: 18 ms here, less than the TRUNCATE it replaces). The code
under test commits for real, as in production: worker processes, the send path's own
connection and two racing dispatchers see each other's rows, which one connection holding a
savepoint per test could not give them.

Each test that asks for a database, a clock or a runtime gets a runtime of its own
(nurture.runtime.create_runtime), current for the test's body: its own engine, clock and
memory outbox, nothing shared with the test before.

In CI (CI=true) a missing service is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from nurture.clock import FrozenClock
from nurture.config import load_settings
from nurture.content.render import EmailContext
from nurture.context import current, use
from nurture.mail.backends import MemoryBackend
from nurture.runtime import Runtime, create_runtime
from nurture.sequences.spec import SequenceSpec, StepSpec, load_folder

# Fixtures of the subscriber's pages (app, client, eager_celery): tests/web_support.py.
pytest_plugins = ["tests.web_support"]

IN_CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
PG_ADMIN_URL = os.environ.get(
    "NURTURE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("NURTURE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# The tests' data key (nurture keys new); tests of keys themselves make their own.
TEST_DATA_KEY = "kdBWw5f1y2G9oXn3tqD1F0CwV9tYh6Jc3mXzq8Rr4uE="


def missing_service(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is not available; CI must start it (see .ci/run)")
    pytest.skip(f"{what} is not available")


def _migrate(url: str) -> None:
    from nurture.migrations import upgrade

    upgrade(url)


@pytest.fixture
def broker() -> str:
    """The real Redis that Celery tests run their workers against."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        missing_service(f"Redis at {REDIS_URL} ({type(exc).__name__})")
    return REDIS_URL


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        missing_service(f"PostgreSQL at {PG_ADMIN_URL} ({type(exc).__name__})")
    yield admin
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_template(postgres_admin: Engine) -> Iterator[str]:
    """A database migrated once per session; never connected to again, so it can be cloned."""
    with _postgres_database(postgres_admin) as (name, url):
        _migrate(url)
        yield name


@contextmanager
def _postgres_database(admin: Engine, template: str | None = None) -> Iterator[tuple[str, str]]:
    name = f"nurture_test_{uuid.uuid4().hex[:10]}"
    clone = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{clone}'))
    try:
        yield name, make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url(postgres_admin: Engine, postgres_template: str) -> Iterator[str]:
    """A migrated, empty PostgreSQL database of the test's own."""
    with _postgres_database(postgres_admin, postgres_template) as (_, url):
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "nurture.db"
        shutil.copy(template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def nurture_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Environment for an isolated nurture: memory mail, memory broker, a test secret."""
    env = {
        "NURTURE_MAIL_URL": "memory://",
        "NURTURE_BROKER_URL": "memory://",
        "NURTURE_SECRET_KEY": "test-secret-key-0123456789",
        "NURTURE_DATA_KEY": TEST_DATA_KEY,
        "NURTURE_BASE_URL": "https://nurture.test",
        "NURTURE_ENV": "development",
    }
    for key in list(os.environ):
        if key.startswith("NURTURE_") and key not in env:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no stray .env or ./outbox from the developer's tree
    return env


@pytest.fixture
def runtime(
    request: pytest.FixtureRequest, nurture_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Runtime]:
    """A fresh runtime from the test's environment, current for the test. With `db` it uses
    that database; with `clock`, that clock."""
    if "db" in request.fixturenames:
        url: str = request.getfixturevalue("db_url")
        monkeypatch.setenv("NURTURE_DATABASE_URL", url)
        nurture_env["NURTURE_DATABASE_URL"] = url
    frozen = FrozenClock(FRIDAY) if "clock" in request.fixturenames else None
    rt = create_runtime(load_settings(), clock=frozen)
    with use(rt):
        yield rt
    rt.close()


@pytest.fixture
def settings_env(nurture_env: dict[str, str], runtime: Runtime) -> dict[str, str]:
    """The isolated environment, and a runtime built from it (reload_runtime() after
    changing it)."""
    return nurture_env


def reload_runtime() -> Runtime:
    """The test changed NURTURE_* in its environment: the current runtime takes the new
    settings (a new engine, mail and task queue), keeping its clock unless NURTURE_CLOCK
    changed, and its outbox while mail still goes to memory."""
    rt = current()
    fresh = load_settings()
    eager = rt.celery.conf.task_always_eager  # eager_celery stays in force
    outbox = rt.mail() if fresh.mail_url == rt.settings.mail_url else None
    rt.close()  # forgets the engine, the Celery app and what was kept for the old settings
    if fresh.clock != rt.settings.clock:
        rt.clock = create_runtime(fresh).clock
    rt.settings = fresh
    if isinstance(outbox, MemoryBackend):
        rt.kept("mail", lambda: outbox)
    if eager:
        rt.celery.conf.task_always_eager = rt.celery.conf.task_eager_propagates = True
    return rt


@pytest.fixture
def db(db_url: str, runtime: Runtime) -> str:
    """A migrated, empty database (SQLite, then PostgreSQL) with the runtime pointed at it."""
    return db_url


@pytest.fixture(autouse=True)
def _drop_test_queues() -> Iterator[None]:
    """Whatever Redis keys a test's Celery queues left (tests/support.py new_queue) go."""
    yield
    from tests.support import drop_queues, queues_made

    if queues_made():
        drop_queues(REDIS_URL)


FRIDAY = datetime(2026, 3, 6, 14, 0, tzinfo=UTC)


@pytest.fixture
def clock(runtime: Runtime) -> FrozenClock:
    """A clock that stands still until the test moves it (Friday 2026-03-06 14:00 UTC)."""
    assert isinstance(runtime.clock, FrozenClock)
    return runtime.clock


@pytest.fixture
def outbox(runtime: Runtime) -> list:
    """What the runtime's memory backend was handed, in order."""
    mail = runtime.mail()
    assert isinstance(mail, MemoryBackend)
    return mail.outbox


@pytest.fixture
def quick_sequence(db: str) -> str:
    """The small test sequence (four steps, minute delays) applied; returns its slug."""
    from nurture.db import transaction
    from nurture.sequences.editing import apply_spec
    from nurture.sequences.spec import load_folder

    with transaction() as s:
        apply_spec(s, load_folder(FIXTURES / "sequences" / "quick"))
    return "quick"


# The five source articles the default sequence cites (templates/articles/README.md says
# where each came from). NURTURE_TEST_ARTICLES points elsewhere.
ARTICLES_DIR = Path(os.environ.get("NURTURE_TEST_ARTICLES", ROOT / "templates" / "articles"))
DEFAULT_SEQUENCE = ROOT / "templates" / "sequences" / "partner-refuses-therapy"


@pytest.fixture(scope="session")
def article_files() -> list[Path]:
    files = sorted(ARTICLES_DIR.glob("0*.txt"))
    assert len(files) == 5, f"expected the five source articles in {ARTICLES_DIR}"
    return files


def sample_context(
    spec: SequenceSpec, step: StepSpec, first_name: str | None = "Anna", **overrides: Any
) -> EmailContext:
    values: dict[str, Any] = {
        "subject": step.subject,
        "body_markdown": step.body_text,
        "first_name": first_name,
        "consult_url": spec.consult.url,
        "consult_text": spec.consult.text,
        "consult_note": spec.consult.note,
        "unsubscribe_url": "https://example.org/unsubscribe/tok3n",
        "postal_address": spec.postal_address,
        "practice_name": spec.from_.name,
        "reason": (
            f"You get this email because you signed up for \u201c{spec.name}\u201d at example.org."
        ),
        "base_url": "https://example.org",
        "sequence_name": spec.name,
        "step_key": step.key,
    }
    values.update(overrides)
    return EmailContext(**values)


@pytest.fixture(scope="session")
def default_spec() -> SequenceSpec:
    return load_folder(DEFAULT_SEQUENCE)
