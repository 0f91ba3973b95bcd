"""Crash-safe file output shared by everything that writes files (no JAX here)."""

from __future__ import annotations

import os
import tempfile

__all__ = ["atomic_write_text"]


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file + rename).

    The text goes to a temporary file in the destination's directory, is flushed and
    fsynced, then renamed over ``path``: a reader sees the old content or the new,
    never a half-written file. On any failure the temporary file is removed.

    Args:
      path: destination file; its parent directory must exist.
      text: the full new content (UTF-8).
    """
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
