"""Database connection handling that the services share."""

from django.db import connection


def release_connection() -> None:
    """Give the database connection back before a long wait on something else (an upstream).

    A slow generation must not hold a connection (or a pool slot) for tens of seconds while
    predictions queue for one; the next query simply takes a connection again. Inside a
    transaction (and so inside a test case) the connection is kept: closing it there would
    break the transaction.
    """
    if not connection.in_atomic_block:
        connection.close()
