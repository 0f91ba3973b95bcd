"""Helpers every stage shares: crash-safe file output, pytree registration, the
check for traced values.
"""

from __future__ import annotations

import os
import tempfile

import jax

__all__ = ["atomic_write_text", "register_pytree", "is_traced"]


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
