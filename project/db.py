"""Database connection handling and the hot path's writes, shared by the services."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, DataError, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import Field, JSONField, Model
from psycopg.types.json import Jsonb


def release_connection() -> None:
    """Give the database connection back before a long wait on something else (an upstream).

    A slow generation must not hold a connection (or a pool slot) for tens of seconds while
    predictions queue for one; the next query simply takes a connection again. Inside a
    transaction (and so inside a test case) the connection is kept: closing it there would
    break the transaction.
    """
    if not connection.in_atomic_block:
        connection.close()


@functools.cache
def insert_statement(model: type[Model], *, with_pk: bool = False) -> str:
    """One INSERT of every concrete column of `model`, for `insert_params`, with RETURNING id.

    The hot writes (a prediction, a request-log row) skip the ORM's per-call SQL compilation:
    the statement text is built once per model and, on PostgreSQL, prepared once per
    connection (see prepared_cursor).
    """
    fields = _insert_fields(model, with_pk=with_pk)
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    pk = connection.ops.quote_name(model._meta.pk.column)
    # Names from the model's own metadata, quoted; every value is a parameter.
    return f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) RETURNING {pk}"  # noqa: S608


def insert(instance: Model) -> None:
    """Save a new `instance` with one prepared INSERT; its primary key is set from RETURNING."""
    with prepared_cursor() as cursor:
        cursor.execute(insert_statement(type(instance)), insert_params(instance))
        instance.pk = cursor.fetchone()[0]
    instance._state.adding = False
    instance._state.db = connection.alias


def insert_params(instance: Model, *, with_pk: bool = False) -> list[Any]:
    """The values of `instance` in insert_statement's order, prepared as the ORM would save them."""
    fields = _insert_fields(type(instance), with_pk=with_pk)
    current = connections[DEFAULT_DB_ALIAS]  # once, not through the proxy for every field
    postgresql = current.vendor == "postgresql"
    return [_db_value(field, field.pre_save(instance, True), current, postgresql) for field in fields]


def _db_value(field: Field, value: Any, current: BaseDatabaseWrapper, postgresql: bool) -> Any:
    if value is not None and postgresql and isinstance(field, JSONField) and not field.encoder:
        # Django would encode jsonb with the standard library: ~20 times slower than orjson on
        # a batch's probabilities. Same JSON; NaN never gets here (inference checks outputs).
        return Jsonb(value, dumps=_json_bytes)
    return field.get_db_prep_save(value, current)


def _json_bytes(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


@functools.cache
def _insert_fields(model: type[Model], *, with_pk: bool) -> list[Field]:
    return [field for field in model._meta.concrete_fields if with_pk or not field.primary_key]


@dataclass(frozen=True)
class Statement:
    """One statement of a joint write (see insert_after)."""

    sql: str
    params: list[Any]
    # The write holds only if this statement changes a row (it must end with RETURNING): an
    # UPDATE of a row that may have been taken by someone else meanwhile. When it changes none,
    # nothing of the joint write is stored and insert_after raises.
    must_change_a_row: bool = False


class NothingChanged(DatabaseError):
    """A statement that had to change a row changed none: the joint write was not made."""


def insert_statement_of(instance: Model) -> Statement:
    """The INSERT of a new `instance` whose primary key is already set (see reserve_id), to be
    run with others by insert_after."""
    statement = insert_statement(type(instance), with_pk=True).rsplit(" RETURNING ", 1)[0]
    return Statement(statement, insert_params(instance, with_pk=True))


def insert_after(statements: list[Statement], then: Model) -> None:
    """Run `statements`, then save `then`, as one unit: on PostgreSQL one statement (each of the
    others a data-modifying CTE), so one round trip and one commit, and all of it or none is
    stored. Elsewhere (SQLite), one transaction."""
    if connection.vendor != "postgresql":
        with transaction.atomic():
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement.sql, statement.params)
                    if statement.must_change_a_row and cursor.fetchone() is None:
                        raise NothingChanged(statement.sql.split(" WHERE ", 1)[0])
            insert(then)
        return
    parts = ", ".join(f"w{index} AS ({statement.sql})" for index, statement in enumerate(statements))
    # A CTE that changed no row makes the whole statement fail: 1 / 0 aborts it, and in
    # autocommit nothing of it is stored. (Every data-modifying CTE runs whether read or not.)
    checks = "".join(
        f", 1 / (SELECT count(*) FROM w{index})"  # noqa: S608 - CTE names of our own
        for index, statement in enumerate(statements)
        if statement.must_change_a_row
    )
    sql = f"WITH {parts} {insert_statement(type(then))}{checks}"
    params = [value for statement in statements for value in statement.params]
    # A check that fails inside a caller's transaction (a test case) must not take that
    # transaction down with it: a savepoint there. In autocommit (a request) the statement is its own.
    around = transaction.atomic() if checks and connection.in_atomic_block else contextlib.nullcontext()
    try:
        with around, prepared_cursor() as cursor:
            cursor.execute(sql, [*params, *insert_params(then)])
            then.pk = cursor.fetchone()[0]
    except DataError as exc:
        if checks and getattr(exc.__cause__, "sqlstate", None) == "22012":  # division_by_zero: a check above
            raise NothingChanged("a statement that had to change a row changed none") from exc
        raise
    then._state.adding = False
    then._state.db = connection.alias


class _IdBlocks:
    """Primary keys taken from a table's sequence a block at a time, so that a row's id is known
    before the row is written (its answer can be rendered first) without a query per row.

    Ids are unique; they are not in creation order across workers (created_at is), and a
    worker that stops leaves its unused ids as a gap.
    """

    BLOCK = 100

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: dict[type[Model], list[int]] = {}
        self._pid = os.getpid()

    def take(self, model: type[Model]) -> int:
        with self._lock:
            if self._pid != os.getpid():  # forked after taking a block: the parent may use those ids
                self._free.clear()
                self._pid = os.getpid()
            free = self._free.setdefault(model, [])
            if not free:
                table, column = model._meta.db_table, model._meta.pk.column
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                        [table, column, self.BLOCK],
                    )
                    free.extend(sorted((row[0] for row in cursor.fetchall()), reverse=True))
            return free.pop()

    def forget(self) -> None:
        with self._lock:
            self._free.clear()


_id_blocks = _IdBlocks()
reserve_id = _id_blocks.take
forget_reserved_ids = _id_blocks.forget


@contextmanager
def prepared_cursor() -> Iterator[Any]:
    """A cursor whose repeated statements PostgreSQL parses and plans once per connection.

    Django's psycopg cursors bind parameters on the client, so every statement is parsed and
    planned again; psycopg's own cursor binds on the server and prepares a statement once it
    has run a few times. Wrapped as Django wraps its cursors, so query counting and error
    translation work as for any other query. Elsewhere (SQLite), Django's own cursor.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    wrapper = CursorDebugWrapper if connection.queries_logged else CursorWrapper
    with wrapper(raw, connection) as cursor:
        yield cursor
