"""File input and output shared by everything that reads or writes files (no JAX here).

Writes are crash-safe (temporary file + rename), create files with the permissions a
plain ``open(path, "w")`` would (``0o666`` minus the umask for a new file, the old mode
for an existing one) and write *through* a symbolic link (the link stays, its target
is replaced).  Reads of text files name the file when it is not UTF-8.
"""

from __future__ import annotations

import os
import secrets
import stat

__all__ = ["atomic_write_text", "read_text"]


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file + rename).

    The text goes to a temporary file in the destination's directory, is flushed and
    fsynced, then renamed over ``path``: a reader sees the old content or the new,
    never a half-written file. On any failure the temporary file is removed.

    Permissions are those of a plain ``open(path, "w")``: a new file gets ``0o666``
    minus the process umask, an existing file keeps its mode.  When ``path`` is a
    symbolic link (also a dangling one), its target is written and the link is kept.

    Args:
      path: destination file; its parent directory must exist.
      text: the full new content (UTF-8).
    """
    path = os.path.realpath(os.fspath(path))  # through symlinks: replace the target
    d, base = os.path.split(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(d, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for open(path, "w")
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise FileExistsError(f"could not create a temporary file next to {path}")
    try:
        if mode is not None:
            os.chmod(tmp, mode)
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


def read_text(path: str | os.PathLike, what: str = "text file") -> str:
    """The content of ``path`` decoded as UTF-8.

    Raises:
      ValueError: the file is not UTF-8 text (names the file, the offset and ``what``
        was expected).
      OSError: it cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{os.fspath(path)}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
            f"{e.start}); valid: a {what}") from None
