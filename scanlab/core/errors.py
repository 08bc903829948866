"""Exceptions shared by every layer; messages are one line, naming the file and the problem."""

from __future__ import annotations


class ScanLabError(Exception):
    """Base class for errors a user can act on (shown as one line, exit code 2)."""


class Cancelled(ScanLabError):
    """A long job stopped because its cancel token was set."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)
