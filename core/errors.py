"""Failures an operator can act on: one line naming what failed and what fixes it.

`shoprecs` prints `error: <message>` and exits with the error's code; the traceback only
with `-v`. Airflow tasks log the same line (dags/). Exit codes (docs/configuration.md):

    1   anything else (a bug: the traceback is printed)
    2   a bad command line (click's usage errors)
    3   a bad configuration value
    4   the order bus is unreachable, refuses the credentials, or keeps failing
    5   the bus answers, but not as its profile (bus.*) says
    6   no input for a date a step needs: landed orders (run extract) or clean orders
        (run clean)
    7   another run holds the warehouse (lock.wait_seconds ran out; core/locks.py)
    8   a store or cluster is unreachable: MongoDB (mongo.uri) or the Spark master
    9   serving was not switched: nothing to roll back to, or the version named is not
        published (completely)
"""
from __future__ import annotations


class OperatorError(Exception):
    """A known failure; str() is the one line an operator reads."""

    code = 1


class ConfigError(OperatorError, ValueError):
    code = 3


class BusUnavailable(OperatorError, RuntimeError):
    code = 4


class BusProfileError(OperatorError, ValueError):
    code = 5


class NoLandedData(OperatorError, FileNotFoundError):
    code = 6


class WarehouseBusy(OperatorError, RuntimeError):
    code = 7


class Unreachable(OperatorError, ConnectionError):
    code = 8


class NotSwitched(OperatorError, RuntimeError):
    code = 9
