"""The statement store: lifecycle, worker threads, sessions and batches.

A statement is created SUBMITTED and handed to a worker pool; the worker marks it PICKED,
opens (or borrows its session's) PostgreSQL connection, marks it STARTED and runs it.
A batch runs its statements one after another in one transaction (``TRANSACTION`` mode)
or each in its own (``AUTO_COMMIT``). As on Redshift, a TRUNCATE commits the transaction
it runs in. Only statement ids and statuses are logged: SQL may hold personal data.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from local.redshift_data_api.auth import Authenticator, Login, LoginFailed
from local.redshift_data_api.errors import ApiError, not_found, validation
from local.redshift_data_api.executor import (
    NO_TRANSACTION,
    TX_CONTROL,
    ExecutionFailed,
    Outcome,
    ResultSet,
    S3Factory,
    connect,
    execute,
    first_word,
    run_control,
)

log = logging.getLogger(__name__)

FINAL = frozenset({"FINISHED", "FAILED", "ABORTED"})
Conn = psycopg.Connection[tuple[Any, ...]]


@dataclass
class Sub:
    """One SQL statement: the whole of an ExecuteStatement, or one of a batch."""

    id: str
    sql: str  # as submitted (parameters unbound)
    bound_sql: str
    created_at: float
    status: str = "SUBMITTED"
    updated_at: float = 0.0
    error: str | None = None
    duration_ns: int = 0
    rows: int = 0
    result: ResultSet | None = None
    query_id: int = 0


@dataclass
class Statement:
    id: str
    request: dict[str, Any]  # target and naming members echoed back by Describe/List
    subs: list[Sub]
    is_batch: bool
    created_at: float
    database: str
    parameters: list[dict[str, str]] | None = None
    session_id: str | None = None
    execution_mode: str = "TRANSACTION"
    status: str = "SUBMITTED"
    updated_at: float = 0.0
    error: str | None = None
    duration_ns: int = 0
    pid: int = 0
    cancel_requested: bool = False
    conn: Conn | None = None
    started_ns: int = 0
    login: Login | None = None


@dataclass
class Session:
    """A connection kept for later statements (``SessionKeepAliveSeconds``).

    ``request`` holds the target members of the statement that opened it (Database,
    WorkgroupName or ClusterIdentifier, SecretArn, DbUser): statements run through the
    session report them too, as on AWS.
    """

    id: str
    database: str
    keep_alive: int
    request: dict[str, Any] = field(default_factory=dict)
    login: Login | None = None
    conn: Conn | None = None
    busy: bool = False
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    current_statement_id: str | None = None
    closed: bool = False
    expires_at: float = field(default_factory=lambda: time.time() + 60)


@dataclass
class Submission:
    sqls: list[str]
    bound_sqls: list[str]
    is_batch: bool
    database: str | None
    request: dict[str, Any]
    parameters: list[dict[str, str]] | None
    client_token: str | None
    session_id: str | None
    keep_alive: int | None
    execution_mode: str = "TRANSACTION"
    login: Login | None = None

    def fingerprint(self) -> str:
        """What a reused ClientToken must match: the whole request but the token."""
        return repr((self.sqls, self.is_batch, self.database, sorted(self.request.items()),
                     self.parameters, self.session_id, self.keep_alive, self.execution_mode))


class StatementEngine:
    """``auth`` None: every statement runs as the server's own PostgreSQL user (the
    stand-in does not authenticate); otherwise as the request's :class:`Login`."""

    def __init__(self, pg_conninfo: str, s3: S3Factory, *, strict_sql: bool = True,
                 workers: int = 16, max_active: int = 200,
                 result_ttl: float = 24 * 3600.0, auth: Authenticator | None = None,
                 max_sessions: int = 500) -> None:
        self._conninfo = pg_conninfo
        # Idle PostgreSQL connections by (database, user), reset between statements: a new
        # backend per statement would re-plan every query and recompile every procedure,
        # which Redshift does not do (it caches compiled code across sessions).
        self._idle: list[tuple[tuple[str, str | None], Conn]] = []  # oldest first
        self.auth = auth
        self._max_sessions = max_sessions
        self._s3 = s3
        self._strict = strict_sql
        self._max_active = max_active
        self._result_ttl = result_ttl
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rsd-worker")
        self._cond = threading.Condition()
        self._statements: dict[str, Statement] = {}
        self._tokens: dict[str, tuple[str, str]] = {}  # token -> (statement id, fingerprint)
        self._sessions: dict[str, Session] = {}
        self._next_query_id = 1000
        self._stopping = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="rsd-reaper", daemon=True)
        self._reaper.start()

    # ----------------------------------------------------------------- submission

    def submit(self, sub: Submission) -> Statement:
        now = time.time()
        with self._cond:
            if sub.client_token and sub.client_token in self._tokens:
                known_id, fingerprint = self._tokens[sub.client_token]
                if fingerprint != sub.fingerprint():
                    raise validation(
                        f"The ClientToken {sub.client_token} was already used with a different "
                        "request; use a new ClientToken for a new statement.")
                return self._statements[known_id]
            active = sum(1 for s in self._statements.values() if s.status not in FINAL)
            if active >= self._max_active:
                raise ApiError("ActiveStatementsExceededException",
                               "The number of active statements exceeds the limit.")
            session = self._claim_session(sub)
            database = session.database if session else sub.database
            assert database is not None
            request = {**session.request, **sub.request} if session else sub.request
            login = session.login if session else sub.login
            sid = str(uuid.uuid4())
            subs = [
                Sub(id=f"{sid}:{k}" if sub.is_batch else sid, sql=sql, bound_sql=bound,
                    created_at=now, updated_at=now)
                for k, (sql, bound) in enumerate(zip(sub.sqls, sub.bound_sqls, strict=True), 1)
            ]
            stmt = Statement(id=sid, request=request, subs=subs, is_batch=sub.is_batch,
                             created_at=now, updated_at=now, database=database,
                             parameters=sub.parameters,
                             session_id=session.id if session else None,
                             execution_mode=sub.execution_mode, login=login)
            self._statements[sid] = stmt
            if session is not None:
                session.current_statement_id = sid
                session.updated_at = now
            if sub.client_token:
                self._tokens[sub.client_token] = (sid, sub.fingerprint())
        try:
            self._pool.submit(self._run, stmt, session)
        except RuntimeError:  # the pool is shut down: nothing would ever run it
            with self._cond:
                self._statements.pop(sid, None)
                self._tokens.pop(sub.client_token or "", None)
                if session is not None:
                    session.busy = False
            raise ApiError("InternalServerException",
                           "The statement could not be queued: the service is stopping.") from None
        log.info("statement %s SUBMITTED", sid)
        return stmt

    def _claim_session(self, sub: Submission) -> Session | None:
        if sub.session_id is not None:
            session = self._sessions.get(sub.session_id)
            if session is None or session.closed or (session.expires_at < time.time()
                                                     and not session.busy):
                raise not_found(f"Session {sub.session_id} is not available: it expired or "
                                "does not exist.", sub.session_id)
            if session.busy:
                raise validation(f"Session {sub.session_id} is busy running another statement.")
            if sub.database is not None and sub.database != session.database:
                raise validation(f"Session {sub.session_id} is connected to database "
                                 f"{session.database}, not {sub.database}.")
            if sub.keep_alive:
                session.keep_alive = sub.keep_alive
            session.busy = True
            return session
        if sub.keep_alive:
            assert sub.database is not None
            if sum(1 for s in self._sessions.values() if not s.closed) >= self._max_sessions:
                raise ApiError("ActiveSessionsExceededException",
                               "The number of active sessions exceeds the limit.")
            target = {k: v for k, v in sub.request.items()
                      if k in ("Database", "WorkgroupName", "ClusterIdentifier", "SecretArn",
                               "DbUser")}
            session = Session(id=str(uuid.uuid4()), database=sub.database,
                              keep_alive=sub.keep_alive, busy=True, request=target,
                              login=sub.login)
            self._sessions[session.id] = session
            return session
        return None

    # ------------------------------------------------------------------ lookups

    def get(self, statement_id: str) -> tuple[Statement, Sub | None]:
        """The statement, and the sub-statement when ``statement_id`` is ``<id>:<n>``."""
        base, _, number = statement_id.partition(":")
        with self._cond:
            stmt = self._statements.get(base)
        if stmt is None or (number and not stmt.is_batch):
            raise not_found("Query does not exist.", statement_id)
        if not number:
            return stmt, None
        index = int(number) - 1
        if not 0 <= index < len(stmt.subs):
            raise not_found("Query does not exist.", statement_id)
        return stmt, stmt.subs[index]

    def wait(self, stmt: Statement, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self._cond:
            while stmt.status not in FINAL:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def statements(self) -> list[Statement]:
        with self._cond:
            return sorted(self._statements.values(), key=lambda s: s.created_at, reverse=True)

    def sessions(self) -> list[Session]:
        """Open sessions and those closed within the result TTL, newest first."""
        with self._cond:
            return sorted(self._sessions.values(), key=lambda s: s.created_at, reverse=True)

    def connect_as(self, login: Login | None, database: str) -> Conn:
        """A Redshift-like session on ``database`` as ``login`` (raises ExecutionFailed)."""
        if self.auth is not None and login is not None:
            try:
                self.auth.check(login)
            except LoginFailed as exc:
                raise ExecutionFailed(str(exc)) from None
            return connect(self._conninfo, database, user=login.user)
        return connect(self._conninfo, database)

    def create_domain(self, database: str, ddl: bytes) -> None:
        """Create one of the stand-in's VARCHAR byte-length domains as the server's own
        user: they implement Redshift's VARCHAR semantics and are no user's object."""
        with connect(self._conninfo, database) as conn:
            conn.execute(ddl)

    # ------------------------------------------------------------------- cancel

    def cancel(self, statement_id: str) -> bool:
        stmt, sub = self.get(statement_id)
        if sub is not None:
            raise validation("Cancel the batch with its statement id, not a sub-statement id.")
        with self._cond:
            if stmt.status in FINAL:
                raise validation(
                    f"Could not cancel a query that is already in {stmt.status} state."
                )
            stmt.cancel_requested = True
        threading.Thread(target=self._interrupt, args=(stmt,), name="rsd-cancel",
                         daemon=True).start()
        log.info("statement %s cancel requested", stmt.id)
        return True

    def _interrupt(self, stmt: Statement, give_up_after: float = 10.0) -> None:
        """Send PostgreSQL cancel requests until the statement ends.

        One request can land between two queries of a statement (or before its query
        started) and interrupt nothing; the worker checks the flag between queries, and the
        repeated request catches the query that started in between.
        """
        deadline = time.monotonic() + give_up_after
        while time.monotonic() < deadline:
            with self._cond:
                if stmt.status in FINAL:
                    return
                conn = stmt.conn
            if conn is not None:
                with suppress(psycopg.Error):
                    conn.cancel_safe(timeout=5.0)
            with self._cond:
                self._cond.wait_for(lambda: stmt.status in FINAL, timeout=0.1)

    # ---------------------------------------------------------------- execution

    def _set(self, stmt: Statement, status: str, sub: Sub | None = None, **fields: Any) -> None:
        now = time.time()
        with self._cond:
            target: Any = sub if sub is not None else stmt
            target.status = status
            target.updated_at = now
            for name, value in fields.items():
                setattr(target, name, value)
            if sub is None or not stmt.is_batch:
                stmt.updated_at = now
                if status in FINAL and stmt.started_ns:
                    stmt.duration_ns = time.perf_counter_ns() - stmt.started_ns
            if sub is not None and not stmt.is_batch:
                stmt.status = status
            self._cond.notify_all()

    def _query_id(self) -> int:
        with self._cond:
            self._next_query_id += 1
            return self._next_query_id

    _IDLE_MAX = 16  # idle connections kept in all (the oldest is closed first)
    # What a fresh session would not have: temp tables, settings, cursors, advisory locks.
    _RESET = ("DISCARD TEMP; DISCARD SEQUENCES; RESET ALL; CLOSE ALL; "
              "SELECT pg_advisory_unlock_all()")

    def _pooled(self, stmt: Statement) -> Conn:
        user = stmt.login.user if self.auth is not None and stmt.login is not None else None
        if self.auth is not None and stmt.login is not None:
            try:
                self.auth.check(stmt.login)
            except LoginFailed as exc:
                raise ExecutionFailed(str(exc)) from None
        key = (stmt.database, user)
        with self._cond:
            for index in range(len(self._idle) - 1, -1, -1):
                if self._idle[index][0] == key:
                    conn = self._idle.pop(index)[1]
                    if not conn.closed:
                        return conn
        return connect(self._conninfo, stmt.database, user=user)

    def _release(self, stmt: Statement, conn: Conn) -> None:
        user = stmt.login.user if self.auth is not None and stmt.login is not None else None
        if conn.closed or conn.info.transaction_status is not TransactionStatus.IDLE:
            conn.close()
            return
        try:
            conn.execute(self._RESET)
        except Exception:  # a broken backend: never reuse it
            conn.close()
            return
        evicted: list[Conn] = []
        with self._cond:
            if self._stopping.is_set():
                evicted.append(conn)
            else:
                self._idle.append(((stmt.database, user), conn))
                while len(self._idle) > self._IDLE_MAX:
                    evicted.append(self._idle.pop(0)[1])
        for old in evicted:
            old.close()

    @contextmanager
    def _connection(self, stmt: Statement, session: Session | None) -> Iterator[Conn]:
        if session is None:
            conn = self._pooled(stmt)
            try:
                yield conn
            finally:
                self._release(stmt, conn)
            return
        if session.conn is None or session.conn.closed:
            session.conn = self.connect_as(session.login, session.database)
        yield session.conn

    def _run(self, stmt: Statement, session: Session | None) -> None:
        try:
            if stmt.cancel_requested:
                self._finish_all(stmt, "ABORTED",
                                 f"ERROR: Query ({self._query_id()}) cancelled on user's request")
                return
            self._set(stmt, "PICKED")
            with self._connection(stmt, session) as conn:
                with self._cond:
                    stmt.conn = conn
                    stmt.pid = conn.info.backend_pid
                self._set(stmt, "STARTED", started_ns=time.perf_counter_ns())
                try:
                    self._execute_unit(stmt, conn)
                finally:
                    with self._cond:
                        stmt.conn = None
        except ExecutionFailed as exc:  # could not connect
            self._finish_all(stmt, "FAILED", exc.error)
        except Exception as exc:  # never leave a statement hanging
            log.exception("statement %s: internal error", stmt.id)
            self._finish_all(stmt, "FAILED", f"ERROR: internal error in the stand-in: {exc}")
        finally:
            if session is not None:
                with self._cond:
                    session.busy = False
                    session.expires_at = time.time() + session.keep_alive
            log.info("statement %s %s", stmt.id, stmt.status)

    def _finish_all(self, stmt: Statement, status: str, error: str | None) -> None:
        for sub in stmt.subs:
            if sub.status not in FINAL:
                self._set(stmt, "ABORTED" if stmt.is_batch and status == "FAILED" else status,
                          sub, error=None if stmt.is_batch else error)
        self._set(stmt, status, error=error)

    def _execute_unit(self, stmt: Statement, conn: Conn) -> None:
        in_user_tx = conn.info.transaction_status in (TransactionStatus.INTRANS,
                                                      TransactionStatus.INERROR)
        auto = stmt.execution_mode == "AUTO_COMMIT"
        wrap = not in_user_tx and not any(first_word(s.bound_sql) in TX_CONTROL
                                          for s in stmt.subs)
        if not stmt.is_batch and (first_word(stmt.subs[0].bound_sql) in NO_TRANSACTION
                                  or first_word(stmt.subs[0].bound_sql, 2) in NO_TRANSACTION):
            wrap = False
        in_block = in_user_tx or (stmt.is_batch and not auto)
        first_error: str | None = None
        in_tx = False
        for index, sub in enumerate(stmt.subs):
            qid = self._query_id()
            try:
                if stmt.cancel_requested:
                    raise ExecutionFailed(f"ERROR: Query ({qid}) cancelled on user's request",
                                          cancelled=True)
                if wrap and not in_tx:
                    run_control(conn, "BEGIN", sub.bound_sql, qid)
                    in_tx = True
                self._set(stmt, "STARTED", sub, query_id=qid)
                began = time.perf_counter_ns()
                outcome = execute(conn, sub.bound_sql, strict=self._strict, s3=self._s3,
                                  query_id=qid, in_block=in_block,
                                  create_domain=(partial(self.create_domain, stmt.database)
                                                 if self.auth is not None else None))
                if stmt.cancel_requested:  # the cancel came too late to interrupt the query
                    raise ExecutionFailed(f"ERROR: Query ({qid}) cancelled on user's request",
                                          cancelled=True)
                last = index == len(stmt.subs) - 1
                if in_tx and (auto or last or first_word(sub.bound_sql) == "TRUNCATE"):
                    run_control(conn, "COMMIT", sub.bound_sql, qid)
                    in_tx = False
                self._finish_sub(stmt, sub, outcome, time.perf_counter_ns() - began)
            except ExecutionFailed as exc:
                if in_tx:
                    with suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                    in_tx = False
                status = "ABORTED" if exc.cancelled else "FAILED"
                self._set(stmt, status, sub, error=exc.error)
                if auto and not exc.cancelled:
                    first_error = first_error or exc.error
                    continue
                for later in stmt.subs[index + 1:]:
                    self._set(stmt, "ABORTED", later)
                self._set(stmt, status, error=exc.error)
                return
        if first_error is not None:
            self._set(stmt, "FAILED", error=first_error)
        else:
            self._set(stmt, "FINISHED")

    def _finish_sub(self, stmt: Statement, sub: Sub, outcome: Outcome, duration: int) -> None:
        self._set(stmt, "FINISHED", sub, rows=outcome.rows, result=outcome.result,
                  duration_ns=duration)

    # ------------------------------------------------------------ housekeeping

    def _reap(self) -> None:
        """Close idle sessions past their keep-alive; forget results past their TTL."""
        while not self._stopping.wait(0.2):
            now = time.time()
            closing: list[Session] = []
            with self._cond:
                for sid, session in list(self._sessions.items()):
                    if session.closed and session.updated_at + self._result_ttl < now:
                        del self._sessions[sid]
                    elif not session.closed and not session.busy and session.expires_at < now:
                        session.closed = True
                        session.updated_at = now
                        closing.append(session)
                for sid, stmt in list(self._statements.items()):
                    if stmt.status in FINAL and stmt.updated_at + self._result_ttl < now:
                        del self._statements[sid]
                self._tokens = {t: s for t, s in self._tokens.items()
                                if s[0] in self._statements}
            for session in closing:
                self._close_session(session)

    @staticmethod
    def _close_session(session: Session) -> None:
        if session.conn is not None:
            with suppress(psycopg.Error):
                session.conn.close()
            log.info("session %s closed", session.id)

    def shutdown(self) -> None:
        self._stopping.set()
        with self._cond:
            running = [s for s in self._statements.values() if s.status not in FINAL]
            for stmt in running:
                stmt.cancel_requested = True
            conns = [s.conn for s in running if s.conn is not None]
        for conn in conns:
            with suppress(psycopg.Error):
                conn.cancel_safe(timeout=2.0)
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._cond:
            idle = [conn for _, conn in self._idle]
            self._idle.clear()
        for conn in idle:
            conn.close()
        with self._cond:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            self._close_session(session)
        self._reaper.join(timeout=2)
