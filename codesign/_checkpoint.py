"""Per-epoch Orbax checkpoints of the whole training state.

A checkpoint holds the model's parameters, BatchNorm statistics and RNG stream
state, the optimizer state (which includes the step count the learning-rate
schedule reads), and a JSON record (epoch, metrics history, run bookkeeping).
The data order needs no state: it is a function of (seed, epoch).

The state is stored as a flat ``{path: numpy array}`` dict (paths like
``0.conv1.kernel``), so a checkpoint is readable without the model code and a
mismatch between a checkpoint and a model is reported key by key. Typed JAX PRNG
keys are stored as their raw ``uint32`` key data and re-wrapped on restore.

Orbax writes each step into a temporary directory and renames it when complete,
so a killed run never leaves a half-written checkpoint; ``CheckpointManager``
keeps the last ``keep`` steps.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = ["Checkpointer", "CheckpointMismatchError", "flatten_state", "unflatten_state"]


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the state it is restored into (names the keys)."""


def _path_str(path: tuple) -> str:
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return ".".join(parts)


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def flatten_state(state: Any) -> dict[str, np.ndarray]:
    """A pytree of arrays -> ``{dotted path: numpy array}`` (PRNG keys -> key data).

    Args:
      state: any pytree of JAX/numpy arrays (e.g. ``nnx.state((model, optimizer))``).

    Returns:
      A flat dict of host numpy arrays, one per leaf, keyed by the leaf's path.
    """
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    out: dict[str, np.ndarray] = {}
    for path, leaf in leaves:
        if _is_key(leaf):
            leaf = jax.random.key_data(leaf)
        out[_path_str(path)] = np.asarray(jax.device_get(leaf))
    return out


def unflatten_state(flat: Mapping[str, np.ndarray], like: Any, *, where: str = "checkpoint") -> Any:
    """Inverse of :func:`flatten_state`, guided by a template pytree.

    Args:
      flat: ``{dotted path: array}`` as written by :func:`flatten_state`.
      like: a pytree with the wanted structure (its leaves give shapes, dtypes and
        which leaves are PRNG keys; their values are not used).
      where: name of the checkpoint for error messages.

    Returns:
      A pytree with ``like``'s structure holding host arrays (PRNG keys re-wrapped).

    Raises:
      CheckpointMismatchError: missing/unexpected keys or a shape/dtype mismatch.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
    names = [_path_str(p) for p, _ in leaves]
    missing = sorted(set(names) - set(flat))
    extra = sorted(set(flat) - set(names))
    if missing or extra:
        raise CheckpointMismatchError(
            f"{where} does not match the model/optimizer state: missing {missing[:8]}"
            f"{'...' if len(missing) > 8 else ''}, unexpected {extra[:8]}{'...' if len(extra) > 8 else ''}"
        )
    new = []
    for name, (_, tmpl) in zip(names, leaves):
        v = np.asarray(flat[name])
        if _is_key(tmpl):
            impl = jax.random.key_impl(tmpl)
            want = jax.random.key_data(tmpl)
            if v.shape != want.shape or v.dtype != want.dtype:
                raise CheckpointMismatchError(
                    f"{where}: key {name!r} holds {v.dtype}{list(v.shape)}, expected PRNG key data "
                    f"{want.dtype}{list(want.shape)}"
                )
            new.append(jax.random.wrap_key_data(v, impl=impl))
        else:
            if v.shape != tuple(tmpl.shape) or v.dtype != tmpl.dtype:
                raise CheckpointMismatchError(
                    f"{where}: key {name!r} holds {v.dtype}{list(v.shape)}, expected "
                    f"{tmpl.dtype}{list(tmpl.shape)}"
                )
            new.append(v)
    return jax.tree_util.tree_unflatten(treedef, new)


class Checkpointer:
    """Save/restore the training state once per epoch with Orbax.

    Args:
      directory: where the numbered step directories go (created if missing).
      keep: how many of the most recent checkpoints to keep (>= 1).
      asynchronous: write in a background thread (the state is copied to host
        memory first, so training can go on and even donate its buffers).
      read_only: only read (no directory creation, no clean-up of a save in progress,
        no deletion): for looking at a run that may still be training.
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int, asynchronous: bool = True,
                 read_only: bool = False):
        import orbax.checkpoint as ocp

        if keep < 1:
            raise ValueError(f"Checkpointer: keep must be >= 1, got {keep}")
        self._ocp = ocp
        self.directory = Path(directory).absolute()
        self._mgr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=None if read_only else keep,
                save_interval_steps=0 if read_only else 1,
                create=not read_only,
                read_only=read_only,
                enable_async_checkpointing=asynchronous,
                cleanup_tmp_directories=not read_only,
            ),
            item_names=("state", "meta"),
        )

    def save(self, epoch: int, state: Any, meta: Mapping[str, Any]) -> None:
        """Checkpoint ``state`` (any array pytree) and the JSON-ready ``meta`` as step ``epoch``."""
        ocp = self._ocp
        flat = flatten_state(state)
        self._mgr.save(
            epoch,
            args=ocp.args.Composite(state=ocp.args.StandardSave(flat), meta=ocp.args.JsonSave(dict(meta))),
            force=True,
        )

    def all_epochs(self) -> list[int]:
        """Epochs with a complete checkpoint on disk, ascending."""
        self._mgr.reload()
        return sorted(self._mgr.all_steps())

    def latest_epoch(self) -> int | None:
        """The most recent complete checkpoint's epoch, or None."""
        steps = self.all_epochs()
        return steps[-1] if steps else None

    def restore(self, epoch: int, like: Any) -> tuple[Any, dict[str, Any]]:
        """Load step ``epoch`` into ``like``'s structure.

        Returns:
          ``(state, meta)``: the state as host arrays shaped like ``like``, and the JSON record.
        """
        ocp = self._ocp
        abstract = {}
        for path, leaf in jax.tree_util.tree_flatten_with_path(like)[0]:
            if _is_key(leaf):
                leaf = jax.eval_shape(jax.random.key_data, leaf)
            abstract[_path_str(path)] = jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)
        where = f"checkpoint {self.directory / str(epoch)}"
        try:
            restored = self._mgr.restore(
                epoch,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()),
            )
        except (ValueError, KeyError) as e:
            raise CheckpointMismatchError(f"{where}: cannot restore ({e})") from None
        state = unflatten_state(dict(restored["state"]), like, where=where)
        return state, dict(restored["meta"])

    def restore_flat(self, epoch: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Load step ``epoch`` without a template: ``({dotted path: numpy array}, meta)``.

        PRNG keys come back as their raw ``uint32`` key data. Useful to inspect or
        compare checkpoints without building the model.
        """
        ocp = self._ocp
        restored = self._mgr.restore(
            epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
        )
        flat = {k: np.asarray(v) for k, v in dict(restored["state"]).items()}
        return flat, dict(restored["meta"])

    def wait(self) -> None:
        """Block until any asynchronous save has been written and finalized."""
        self._mgr.wait_until_finished()

    def close(self) -> None:
        """Finish pending writes and release Orbax resources."""
        self._mgr.wait_until_finished()
        self._mgr.close()


def read_latest(directory: str | os.PathLike) -> tuple[int | None, dict[str, np.ndarray]]:
    """The newest complete checkpoint in ``directory``, read without a template and without
    touching the directory (a read-only manager: nothing is created or cleaned up).

    Returns:
      ``(epoch, {dotted path: numpy array})`` (see :meth:`Checkpointer.restore_flat`), or
      ``(None, {})`` when it holds no complete checkpoint.
    """
    import logging

    absl = logging.getLogger("absl")  # orbax logs a warning that a read-only manager is read-only
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        ckpt = Checkpointer(directory, keep=1, asynchronous=False, read_only=True)
    finally:
        absl.setLevel(level)
    try:
        epoch = ckpt.latest_epoch()
        if epoch is None:
            return None, {}
        return epoch, ckpt.restore_flat(epoch)[0]
    finally:
        ckpt.close()
