"""Helpers every stage shares: file input and output, pytree registration, the check
for traced values.

Writes are crash-safe (temporary file + rename), create files with the permissions a
plain ``open(path, "w")`` would (``0o666`` minus the umask for a new file, the old mode
for an existing one) and write *through* a symbolic link (the link stays, its target
is replaced).  Reads of text files name the file when it is not UTF-8.
"""

from __future__ import annotations

import os
import secrets
import stat

import jax

__all__ = ["atomic_write_bytes", "atomic_write_text", "is_traced", "read_text", "register_pytree"]


def register_pytree(cls, data: list[str], meta: list[str]):
    """Register frozen dataclass ``cls`` as a JAX pytree: ``data`` fields are leaves
    (traced under ``jit``/``grad``/``vmap``), ``meta`` fields static metadata.
    Returns ``cls``."""
    jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)
    return cls


def is_traced(tree) -> bool:
    """Whether any leaf of ``tree`` (any pytree, or a single value) is a JAX tracer,
    i.e. the caller runs under ``jit``, ``grad`` or ``vmap`` and its values are not
    known."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`.

    Args:
      path: destination file; its parent directory must exist.
      text: the full new content.
    """
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename).

    The bytes go to a temporary file in the destination's directory, are flushed and
    fsynced, then renamed over ``path``: a reader sees the old content or the new,
    never a half-written file. On any failure the temporary file is removed.

    Permissions are those of a plain ``open(path, "wb")``: a new file gets ``0o666``
    minus the process umask, an existing file keeps its mode.  When ``path`` is a
    symbolic link (also a dangling one), its target is written and the link is kept.

    Args:
      path: destination file; its parent directory must exist.
      data: the full new content (``bytes``, ``bytearray`` or ``memoryview``, e.g. a
        ``io.BytesIO().getvalue()`` holding a PNG or an ``.npz``).
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
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for open(path, "wb")
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise FileExistsError(f"could not create a temporary file next to {path}")
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
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
