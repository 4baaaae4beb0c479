"""Database connections: what a request holds, and when it gives it back."""

from __future__ import annotations

from django.db import connection


def release_connection() -> None:
    """Give the database connection back to the pool before a long wait on something else.

    A slow generation must not hold a connection (a pool slot) for tens of seconds while
    predictions queue for one; the next query simply takes one again. Inside a transaction (and so
    inside a test case) the connection is kept: closing it there would break the transaction.
    """
    if not connection.in_atomic_block:
        connection.close()
