"""Emptying the test database after a transactional test while other processes use it.

pytest-django empties the database after each transactional test (the browser and
worker tests) with Django's flush: one TRUNCATE of every table, which takes an ACCESS
EXCLUSIVE lock on each table in turn, in an order that changes from run to run (Django
lists the tables from a set). The worker processes started by tests/conftest.py and the
live server's threads use the same database over their own connections. A worker whose
transaction holds a lock on a table the TRUNCATE has not reached yet, and then needs one
the TRUNCATE has already locked, deadlocks with it; PostgreSQL aborts one of the two
after deadlock_timeout, and on a loaded machine that was the flush (DeadlockDetected in
teardown). The tables then kept their rows, and the next test's first fixture user failed
with IntegrityError (a duplicate username).

So, on PostgreSQL, the flush here:

1. first waits (up to SETTLE_SECONDS) for the transactions that other connections to the
   test database have open to end, so it does not start while a worker is mid-write;
2. ends, with pg_terminate_backend, the connections whose transaction is still the same
   one after that wait: a frozen worker or a thread that never committed would otherwise
   block the TRUNCATE for good;
3. runs with a lock_timeout shorter than deadlock_timeout: the TRUNCATE gives up its locks
   before PostgreSQL could call the wait a deadlock, so the worker's transaction goes on
   untouched, and the flush is tried again (from step 1) until FLUSH_PATIENCE runs out;
4. if it still fails, the test's teardown error is the one report: the database is marked
   dirty, and the next test's setup flushes it before anything else (and says so if it
   cannot), so the failure does not come back as an IntegrityError in the next test.

install() puts this in place of TransactionTestCase's flush for the whole session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management import call_command
from django.db import connections
from django.test import TransactionTestCase

logger = logging.getLogger(__name__)

# How long other connections' open transactions get to end before they are ended.
SETTLE_SECONDS = 10.0
# How long one flush keeps trying before its teardown fails.
FLUSH_PATIENCE = 90.0
# SQLSTATEs of a flush that lost to another connection's locks: deadlock_detected and
# lock_not_available (what lock_timeout raises). Anything else is raised at once.
LOCK_CONFLICTS = frozenset({"40P01", "55P03"})

# Aliases whose last flush failed, so their tables may still hold the last test's rows.
dirty: set[str] = set()


class DatabaseNotEmptied(Exception):
    """A database the previous test's teardown could not empty is still not empty."""


def sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of the database error under `exc` (flush wraps it in CommandError,
    Django in OperationalError), or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if code:
            return str(code)
        exc = exc.__cause__ or exc.__context__
    return None


def open_transactions(alias: str) -> dict[int, Any]:
    """Other client connections to this database inside a transaction: pid -> start."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT pid, xact_start FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' AND xact_start IS NOT NULL"
        )
        return dict(cursor.fetchall())


def settle(alias: str, timeout: float = SETTLE_SECONDS) -> list[int]:
    """Wait until every transaction open on other connections now has ended; end the
    connections of those still open after `timeout`. Returns the pids ended.

    Only the transactions open at the start count: new short ones keep starting while
    the workers run, and they are what lock_timeout is for.
    """
    waiting = open_transactions(alias)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        time.sleep(0.05)
        now = open_transactions(alias)
        # The same pid with the same start is the same transaction.
        waiting = {pid: start for pid, start in waiting.items() if now.get(pid) == start}
    if not waiting:
        return []
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, now() - xact_start, left(query, 200) FROM pg_stat_activity"
            " WHERE pid = ANY(%s)",
            [list(waiting)],
        )
        for pid, state, age, query in cursor.fetchall():
            logger.warning(
                "ending connection %s before the flush: %s for %s, last query %r",
                pid, state, age, query,
            )  # fmt: skip
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [list(waiting)]
        )
    return list(waiting)


@contextmanager
def lock_timeout(alias: str) -> Iterator[None]:
    """Make this connection's lock waits end before deadlock_timeout would end them.

    Whichever waiter's deadlock check runs first is aborted, and the flush waits first;
    giving up earlier than that check turns a deadlock into a retry, and leaves the
    other connection's transaction alone.
    """
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout'")
        deadlock_ms = cursor.fetchone()[0]
        cursor.execute(f"SET lock_timeout = {max(deadlock_ms // 2, 10)}")
    try:
        yield
    finally:
        with connections[alias].cursor() as cursor:
            cursor.execute("RESET lock_timeout")


def flush_robustly(
    alias: str, flush: Callable[[], None], *, patience: float = FLUSH_PATIENCE
) -> None:
    """Run `flush` (which empties `alias`) as the module docstring says; raise its last
    error after `patience` seconds of lock conflicts."""
    if connections[alias].vendor != "postgresql":
        flush()
        return
    deadline = time.monotonic() + patience
    attempt = 0
    while True:
        attempt += 1
        settle(alias, timeout=max(0.0, min(SETTLE_SECONDS, deadline - time.monotonic())))
        try:
            with lock_timeout(alias):
                flush()
        except Exception as exc:
            if sqlstate(exc) not in LOCK_CONFLICTS or time.monotonic() > deadline:
                raise
            logger.info("flush attempt %d lost to another connection's locks; again", attempt)
            time.sleep(min(0.05 * attempt, 0.5))
            continue
        return


def _aliases(case: Any) -> list[str]:
    return case._databases_names(include_mirrors=False)


_original_fixture_teardown = TransactionTestCase._fixture_teardown
_original_pre_setup = TransactionTestCase.__dict__["_pre_setup"]


def _fixture_teardown(self: TransactionTestCase) -> None:
    aliases = _aliases(self)
    # Marked before trying, cleared on success: a flush that fails by any route, or is
    # interrupted, leaves the mark for the next test's setup.
    dirty.update(aliases)
    # Django's flush loops over the aliases itself; the project has one database.
    flush_robustly(aliases[0], lambda: _original_fixture_teardown(self))
    dirty.difference_update(aliases)


def flush_dirty(aliases: list[str]) -> None:
    """Empty the databases whose last flush failed, before a test uses them."""
    for alias in aliases:
        if alias not in dirty:
            continue
        try:
            flush_robustly(
                alias,
                lambda alias=alias: call_command(
                    "flush", verbosity=0, interactive=False, database=alias, reset_sequences=False
                ),
            )
        except Exception as exc:
            raise DatabaseNotEmptied(
                f"the previous test's teardown could not empty {alias!r}, nor could this "
                "test's setup: see the previous test's teardown error"
            ) from exc
        dirty.discard(alias)


@classmethod  # type: ignore[misc]
def _pre_setup(cls: type[TransactionTestCase]) -> None:
    # TestCase runs this too: a dirty database would break its fixtures just the same.
    flush_dirty(_aliases(cls))
    _original_pre_setup.__func__(cls)


def install() -> Callable[[], None]:
    """Use the robust flush in every transactional test; returns the undo."""
    TransactionTestCase._fixture_teardown = _fixture_teardown  # type: ignore[method-assign]
    TransactionTestCase._pre_setup = _pre_setup  # type: ignore[method-assign,assignment]

    def uninstall() -> None:
        TransactionTestCase._fixture_teardown = _original_fixture_teardown  # type: ignore[method-assign]
        TransactionTestCase._pre_setup = _original_pre_setup  # type: ignore[method-assign]

    return uninstall
