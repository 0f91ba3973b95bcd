"""Errors raised by :mod:`codesign.data`."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

__all__ = ["DataFileError", "DownloadError", "download_option", "option_wording"]

_CLI_WORDING = contextvars.ContextVar("codesign_data_cli_wording", default=False)


@contextlib.contextmanager
def option_wording(*, cli: bool) -> Iterator[None]:
    """Word the hints of data errors raised inside the block for a command line
    (``--download``) when ``cli`` is True, else for Python (``download=True``, the default)."""
    token = _CLI_WORDING.set(cli)
    try:
        yield
    finally:
        _CLI_WORDING.reset(token)


def download_option() -> str:
    """How the caller turns downloads on: ``--download`` (command line) or ``download=True``."""
    return "--download" if _CLI_WORDING.get() else "download=True"


class DataFileError(ValueError):
    """A dataset file exists but is not what it should be (corrupt, truncated, wrong file).

    The message names the file, what was checked, what was expected and what was found.

    Attributes:
        path: the offending file.
        what: what was checked (e.g. ``"magic number"``, ``"size"``, ``"md5"``).
        expected: the expected value, as text.
        found: the value found, as text.
    """

    def __init__(self, path: str | os.PathLike, what: str, expected: str, found: str,
                 hint: str | None = None) -> None:
        self.path = os.fspath(path)
        self.what = what
        self.expected = expected
        self.found = found
        msg = f"{self.path}: bad {what}: expected {expected}, found {found}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


class DownloadError(OSError):
    """Every source for a dataset file failed (network error, HTTP error, checksum mismatch).

    Attributes:
        filename: the file that could not be obtained.
        attempts: ``(url, reason)`` for every source tried, in order.
    """

    def __init__(self, filename: str, attempts: list[tuple[str, str]], hint: str = "") -> None:
        self.filename = filename
        self.attempts = list(attempts)
        lines = [f"could not download {filename} from any of {len(attempts)} source(s):"]
        lines += [f"  {url}: {reason}" for url, reason in attempts]
        if hint:
            lines.append(hint)
        self.message = "\n".join(lines)
        super().__init__(self.message)

    def __new__(cls, *args, **kwargs):
        # OSError.__new__ would read (filename, attempts, hint) as (errno, strerror, ...).
        return super().__new__(cls)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (type(self), (self.filename, self.attempts))
