"""The flush that empties the database after a transactional test, while another
connection (a worker's) is in the middle of a transaction on the same database.

Each test here runs a transactional test's teardown itself, the way pytest-django does
after every browser and worker test, with a worker-like connection of its own holding a
lock, and checks what the next test would find. Reproduces issue 12's "DeadlockDetected
in teardown, then IntegrityError on the next test's fixture user" without load: the
deadlock is arranged, not waited for. See tests/db_flush.py for the fix.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.core.management.color import no_style
from django.core.management.sql import sql_flush
from django.db import OperationalError, connection
from django.test import TestCase, TransactionTestCase

from tests.conftest import PASSWORD

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the TRUNCATE deadlock is PostgreSQL's"
    ),
]


class AfterATransactionalTest(TransactionTestCase):
    """What pytest-django builds for a transactional test; its teardown is the flush."""


class BeforeTheNextTest(TestCase):
    """What pytest-django builds for the next (ordinary) test; its setup comes next."""


def teardown() -> None:
    AfterATransactionalTest(methodName="__init__")._fixture_teardown()


def next_test_setup() -> None:
    """The next test's setup, then its first fixture user, then its teardown."""
    case = BeforeTheNextTest(methodName="__init__")
    case._pre_setup()
    try:
        get_user_model().objects.create_user("olivia", "olivia@example.com", PASSWORD)
    finally:
        case._fixture_teardown()


def flush_order() -> tuple[str, str]:
    """The first and last table the flush's TRUNCATE locks (Django lists them from a
    set, so the order changes between runs, never within one)."""
    [statement] = sql_flush(no_style(), connection, reset_sequences=False)
    tables = re.findall(r'"([^"]+)"', statement)
    return tables[0], tables[-1]


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def deadlock_timeout() -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout'")
        return cursor.fetchone()[0] / 1000


def connect() -> psycopg.Connection:
    s = connection.settings_dict
    return psycopg.connect(
        dbname=s["NAME"], user=s["USER"], password=s["PASSWORD"] or None,
        host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432,
    )  # fmt: skip


def waits_for_a_lock(conn: psycopg.Connection, pid: int) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", [pid])
    return bool(row.fetchone()[0])


class Worker(threading.Thread):
    """A worker's transaction: it reads the last table the flush locks, then (once the
    flush's TRUNCATE waits for that table, or after `patience` seconds) the first one,
    and commits. A worker saving an answer does the same: the generation row, then the
    user it belongs to. Against a TRUNCATE already waiting, the second read closes a
    cycle: a deadlock. `late` seconds between seeing the wait and the second read are
    a worker slowed down by a busy machine."""

    def __init__(
        self, flusher_pid: int, *, patience: float = 2.0, late: float = 0.0, hold: float = 0.1
    ) -> None:
        super().__init__(daemon=True)
        self.first, self.last = flush_order()
        self.flusher_pid = flusher_pid
        self.patience = patience
        self.late = late
        self.hold = hold
        self.holding = threading.Event()
        self.saw_the_flush_wait = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with connect() as conn:
                conn.execute(f'SELECT 1 FROM "{self.last}" LIMIT 1')
                self.holding.set()
                deadline = time.monotonic() + self.patience
                while time.monotonic() < deadline:
                    if waits_for_a_lock(conn, self.flusher_pid):
                        self.saw_the_flush_wait = True
                        time.sleep(self.late)
                        break
                    time.sleep(0.01)
                conn.execute(f'SELECT 1 FROM "{self.first}" LIMIT 1')
                time.sleep(self.hold)
                conn.commit()
        except BaseException as exc:
            self.error = exc
        finally:
            self.holding.set()

    def start_holding(self) -> Worker:
        self.start()
        assert self.holding.wait(20)
        assert self.error is None, self.error
        return self


@pytest.fixture
def stuck() -> Iterator[list[psycopg.Connection]]:
    opened: list[psycopg.Connection] = []
    yield opened
    for conn in opened:
        conn.close()


def test_a_worker_mid_transaction_does_not_deadlock_the_flush(owner):
    worker = Worker(backend_pid()).start_holding()
    teardown()  # failed with DeadlockDetected ("couldn't be flushed")
    worker.join(30)
    assert worker.error is None, worker.error  # the worker's write is not the victim
    assert not worker.saw_the_flush_wait  # the flush waited for the worker instead
    assert not get_user_model().objects.exists()
    next_test_setup()


def test_a_worker_starting_during_the_flush_makes_it_retry_not_deadlock(owner, monkeypatch):
    # A worker whose transaction begins just after the flush has checked that none is
    # open: the TRUNCATE meets it, gives up before deadlock_timeout, and retries. The
    # worker closes the cycle only after the TRUNCATE's deadlock check has run (found
    # nothing) so without lock_timeout PostgreSQL would abort the worker's transaction.
    from tests import db_flush

    flusher = backend_pid()
    worker = Worker(flusher, patience=20, late=1.5 * deadlock_timeout(), hold=0.3)
    settled = db_flush.settle
    attempts: list[float] = []

    def settle_then_a_worker_starts(alias: str, timeout: float) -> list[int]:
        ended = settled(alias, timeout)
        attempts.append(time.monotonic())
        if not worker.is_alive() and not worker.holding.is_set():
            worker.start_holding()
        return ended

    monkeypatch.setattr(db_flush, "settle", settle_then_a_worker_starts)
    teardown()
    worker.join(30)
    assert worker.saw_the_flush_wait  # the deadlock was set up ...
    assert worker.error is None, worker.error  # ... and nobody was aborted for it
    assert len(attempts) >= 2  # the TRUNCATE gave up its locks and came back
    assert not get_user_model().objects.exists()
    next_test_setup()


def test_a_connection_stuck_in_a_transaction_is_ended_for_the_flush(owner, monkeypatch, stuck):
    from tests import db_flush

    monkeypatch.setattr(db_flush, "SETTLE_SECONDS", 2.0)
    first, last = flush_order()
    holder = connect()
    stuck.append(holder)
    holder.execute(f'SELECT 1 FROM "{last}" LIMIT 1')  # and never commits
    flusher = backend_pid()

    # Without the fix the TRUNCATE waits for ever (no cycle, so no deadlock error);
    # this cancels it instead, so the test fails rather than hangs.
    done = threading.Event()

    def cancel_a_hung_flush() -> None:
        if not done.wait(30):
            with connect() as conn:
                conn.execute("SELECT pg_cancel_backend(%s)", [flusher])

    threading.Thread(target=cancel_a_hung_flush, daemon=True).start()
    started = time.monotonic()
    try:
        teardown()
    finally:
        done.set()
    assert time.monotonic() - started < 20
    with pytest.raises(psycopg.OperationalError):
        holder.execute("SELECT 1")  # its connection was ended
    assert not get_user_model().objects.exists()
    next_test_setup()


def test_a_failed_flush_does_not_break_the_next_test_fixture_user(owner, monkeypatch):
    ops = type(connection.ops)

    def fails(self: Any, sql_list: list[str]) -> None:
        raise OperationalError("could not flush, as when a deadlock ended it")

    with monkeypatch.context() as patched:
        patched.setattr(ops, "execute_sql_flush", fails)
        with pytest.raises(Exception, match="couldn't be flushed"):
            teardown()
    assert get_user_model().objects.filter(username="olivia").exists()  # left behind
    # Failed with IntegrityError: duplicate key value violates unique constraint.
    next_test_setup()
    assert not get_user_model().objects.exists()
