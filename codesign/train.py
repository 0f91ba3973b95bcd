"""Training and evaluation: ``train_and_evaluate(config, workdir)`` and its pieces.

The structure follows the Flax NNX examples: a testable
:func:`train_and_evaluate` under a thin CLI (``codesign train``), with
:func:`train_step` / :func:`eval_step` jitted and the optimizer an
``nnx.Optimizer(model, tx, wrt=nnx.Param)``.

``train_step`` and ``eval_step`` are the readable ``nnx.jit`` versions (use them in
your own loops and notebooks). The loop inside :func:`train_and_evaluate` runs the
*same* step body through the split/merge pattern with ``jax.jit`` on the pure state
(``nnx.split`` once, ``nnx.merge`` inside the jitted function), with data
normalization and augmentation fused into the step. That removes the per-call
graph traversal of ``nnx.jit`` (about 1.2 ms per call in graph mode, 0.4 ms in
tree mode, measured on this project's 2-core CPU; see the train branch report),
which matters for small models whose step takes a few milliseconds.

Data parallelism
----------------
The loop builds a 1-D ``jax.sharding.Mesh`` over ``config.num_devices`` devices
(default: all of them) with axis ``"data"``. Every batch is sharded along that axis,
the model/optimizer state is replicated, and XLA inserts the gradient all-reduce
(and, for BatchNorm, the cross-device batch statistics, so BN behaves exactly as on
one device). The global batch size must divide evenly by the number of devices.
On one CPU you can try it with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``.

Multi-host
----------
Start one process per host with the same config and ``--distributed``
(``Config.distributed=True``)::

    # on every host (SLURM, Open MPI, Kubernetes and Cloud TPU are detected by JAX):
    codesign train cifar10 --distributed --workdir /shared/runs/c10
    # elsewhere, say where the coordinator (process 0) listens, how many processes
    # there are and which one this is (process 0 shown; run the same on each host):
    JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 \\
        codesign train cifar10 --distributed --workdir /shared/runs/c10

``jax.distributed.initialize()`` is then called before anything else (with
``num_processes`` / ``process_id`` from ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``
when set; JAX itself reads ``JAX_COORDINATOR_ADDRESS``); the mesh
spans every device of every process, each process reads the same (seed, epoch)
batch order and feeds its own slice of each global batch
(``jax.make_array_from_process_local_data``), and only process 0 writes
``config.json`` / ``metrics.jsonl`` / ``report.json`` (Orbax coordinates the
checkpoint writes). The workdir must be on a filesystem all hosts share.
``tests/test_sharding.py`` runs this path with two CPU processes on one machine
(gloo collectives) and checks it against one process with two devices; real
multi-host clusters are untested here.

Reproducibility
---------------
Parameters, dropout and augmentation randomness come from ``config.seed``; the
data order is a function of (seed, epoch) and the augmentation key of
(seed, epoch, step). A checkpoint holds everything else (parameters, BatchNorm
statistics, the models' RNG stream counters, optimizer state, epoch), so a
killed run continued with ``resume=True`` ends with bitwise the same parameters
as an uninterrupted run on the same device count.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from codesign._checkpoint import Checkpointer
from codesign._config import Config, ConfigError, config_diff, validate_names
from codesign._report import atomic_write_json, atomic_write_text, results_table

__all__ = [
    "NonFiniteLossError",
    "WorkdirConflictError",
    "count_params",
    "create_train_state",
    "cross_entropy_loss",
    "decay_mask",
    "eval_step",
    "hardware_report",
    "make_optimizer",
    "make_schedule",
    "train_and_evaluate",
    "train_step",
]

CHECKPOINT_DIR = "checkpoints"
RUN_FILES = ("config.json", "metrics.jsonl", "report.json")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/Inf loss or parameter; the run stopped."""


class WorkdirConflictError(RuntimeError):
    """The workdir holds a run that the requested one may not silently reuse."""


# --------------------------------------------------------------------------------------
# Optimizer, schedules, loss
# --------------------------------------------------------------------------------------


def make_schedule(config: Config, steps_per_epoch: int) -> optax.Schedule:
    """The learning-rate schedule (per optimizer step) named by ``config.schedule``.

    * ``constant``: linear warmup from 0 over ``warmup_epochs``, then ``learning_rate``.
    * ``cosine``: linear warmup from 0 to ``learning_rate``, cosine decay to 0 at the
      last step.
    * ``onecycle``: cosine rise from ``learning_rate / onecycle_div_factor`` to
      ``learning_rate`` over ``warmup_epochs``, cosine fall to
      ``learning_rate / (onecycle_div_factor * onecycle_final_div_factor)``
      (``optax.cosine_onecycle_schedule``).

    Args:
      config: the run config.
      steps_per_epoch: optimizer steps per epoch (>= 1).

    Returns:
      ``schedule(step) -> learning rate``.
    """
    total = max(1, config.epochs * steps_per_epoch)
    # warmup steps, kept below the total so a decay phase exists (tiny runs)
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    lr = config.learning_rate
    if total == 1:  # a single step: no room for warmup or decay
        return optax.constant_schedule(lr)
    if config.schedule == "constant":
        if warmup == 0:
            return optax.constant_schedule(lr)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup]
        )
    if config.schedule == "cosine":
        if warmup == 0:
            return optax.cosine_decay_schedule(lr, total)
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total, end_value=0.0)
    if config.schedule == "onecycle":
        return optax.cosine_onecycle_schedule(
            total, lr, pct_start=max(warmup, 1) / total,
            div_factor=config.onecycle_div_factor,
            final_div_factor=config.onecycle_final_div_factor,
        )
    raise ConfigError(f"unknown schedule {config.schedule!r}")


def decay_mask(params: Any) -> Any:
    """Which parameters get weight decay: those with ``ndim >= 2`` (kernels, embeddings).

    Biases, BatchNorm/LayerNorm scales and offsets (all 1-D) are not decayed.

    Args:
      params: a pytree of parameter arrays.

    Returns:
      The same structure with a bool per leaf.
    """
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(config: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    """The Optax transformation for ``config``.

    SGD: ``clip -> add_decayed_weights(weight_decay, mask) -> sgd(schedule, momentum,
    nesterov)`` -- classic coupled L2 (``g + wd * w``, then momentum), as in the
    usual ResNet/CIFAR recipes. AdamW: ``clip -> adamw(schedule, b1=momentum,
    b2=beta2, weight_decay, mask)`` -- decoupled decay, scaled by the schedule. In
    both, :func:`decay_mask` keeps biases and norm scales undecayed.

    Args:
      config: the run config.
      steps_per_epoch: optimizer steps per epoch (for the schedule).
    """
    sched = make_schedule(config, steps_per_epoch)
    parts = []
    if config.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
    if config.optimizer == "sgd":
        if config.weight_decay > 0:
            parts.append(optax.add_decayed_weights(config.weight_decay, mask=decay_mask))
        parts.append(optax.sgd(sched, momentum=config.momentum or None, nesterov=config.nesterov))
    elif config.optimizer == "adamw":
        parts.append(
            optax.adamw(sched, b1=config.momentum, b2=config.beta2,
                        weight_decay=config.weight_decay, mask=decay_mask)
        )
    else:
        raise ConfigError(f"unknown optimizer {config.optimizer!r}")
    return optax.chain(*parts) if len(parts) > 1 else parts[0]


def cross_entropy_loss(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy with optional label smoothing.

    With smoothing ``a`` and ``K`` classes the target is ``(1 - a) * onehot + a / K``.

    Args:
      logits: float ``[B, K]``.
      labels: int ``[B]`` class indices.
      label_smoothing: ``a`` in ``[0, 1)``.

    Returns:
      float32 ``[B]`` losses (nats).
    """
    logits = logits.astype(jnp.float32)
    if label_smoothing == 0.0:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


# --------------------------------------------------------------------------------------
# Steps (shared body; nnx.jit versions are public, the loop uses split/merge + jax.jit)
# --------------------------------------------------------------------------------------


def _train_step_body(model: nnx.Module, optimizer: nnx.Optimizer, images: jax.Array,
                     labels: jax.Array, label_smoothing: float) -> tuple[jax.Array, jax.Array]:
    """One optimizer step in place; returns (sum of losses, number correct) over the batch."""

    def loss_fn(m):
        logits = m(images)
        losses = cross_entropy_loss(logits, labels, label_smoothing)
        return losses.mean(), (losses, logits)

    (_, (losses, logits)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    correct = jnp.sum(jnp.argmax(logits, -1) == labels)
    return jnp.sum(losses), correct


def _eval_body(model: nnx.Module, images: jax.Array, labels: jax.Array,
               mask: jax.Array) -> jax.Array:
    """[sum of losses, number correct, number counted] over the rows where ``mask``."""
    logits = model(images)
    losses = cross_entropy_loss(logits, labels)
    maskf = mask.astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return jnp.stack([jnp.sum(losses * maskf), jnp.sum(correct * maskf), jnp.sum(maskf)])


@nnx.jit(static_argnames=("label_smoothing",))
def train_step(model: nnx.Module, optimizer: nnx.Optimizer, images: jax.Array,
               labels: jax.Array, *, label_smoothing: float = 0.0) -> dict[str, jax.Array]:
    """One jitted optimizer step (updates ``model`` and ``optimizer`` in place).

    Put the model in training mode first (``model.train()``) so BatchNorm uses batch
    statistics (and updates its running averages) and Dropout is active.

    Args:
      model: an NNX model mapping float ``[B, H, W, C]`` to logits ``[B, K]``.
      optimizer: ``nnx.Optimizer(model, tx, wrt=nnx.Param)``.
      images: float32 ``[B, H, W, C]`` (already normalized/augmented).
      labels: int32 ``[B]``.
      label_smoothing: see :func:`cross_entropy_loss`.

    Returns:
      ``{"loss": mean training loss (with smoothing), "accuracy": fraction correct}``.
    """
    loss_sum, correct = _train_step_body(model, optimizer, images, labels, label_smoothing)
    n = labels.shape[0]
    return {"loss": loss_sum / n, "accuracy": correct / n}


@nnx.jit
def eval_step(model: nnx.Module, images: jax.Array, labels: jax.Array,
              mask: jax.Array | None = None) -> dict[str, jax.Array]:
    """Jitted evaluation sums over one batch (no smoothing; nothing is updated).

    Put the model in eval mode first (``model.eval()``: BatchNorm running
    averages, Dropout off).

    Args:
      model: the NNX model.
      images: float32 ``[B, H, W, C]``.
      labels: int32 ``[B]``.
      mask: optional bool ``[B]``; rows where it is False (padding) are ignored.

    Returns:
      ``{"loss_sum", "correct", "count"}`` (float32 scalars) -- divide by ``count``.
    """
    if mask is None:
        mask = jnp.ones(labels.shape, bool)
    s = _eval_body(model, images, labels, mask)
    return {"loss_sum": s[0], "correct": s[1], "count": s[2]}


# --------------------------------------------------------------------------------------
# State creation
# --------------------------------------------------------------------------------------


def create_train_state(config: Config, *, input_shape: tuple[int, int, int], num_classes: int,
                       steps_per_epoch: int) -> tuple[nnx.Module, nnx.Optimizer]:
    """Build the model (in training mode) and its optimizer for ``config``.

    Args:
      config: the run config (``model``, ``model_kwargs``, ``seed``, optimizer fields).
      input_shape: (H, W, C) of one image.
      num_classes: number of classes K.
      steps_per_epoch: optimizer steps per epoch (for the schedule).

    Returns:
      ``(model, optimizer)`` with ``optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)``.
    """
    import models

    model = models.create(
        config.model, rngs=nnx.Rngs(config.seed), num_classes=num_classes,
        input_shape=tuple(input_shape), **config.model_kwargs,
    )
    model.train()
    optimizer = nnx.Optimizer(model, make_optimizer(config, steps_per_epoch), wrt=nnx.Param)
    return model, optimizer


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param`` leaves) in ``model``."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


MACS_NOTE = "hwmodel.extract_workload (batch 1, dense)"


def _count_macs(model: nnx.Module, input_shape: tuple[int, ...]) -> tuple[int, str]:
    """MACs per image (batch 1) from ``hwmodel.extract_workload``, and where they came from."""
    return int(_workload(model, input_shape).total_macs), MACS_NOTE


def _workload(model: nnx.Module, input_shape: tuple[int, ...]):
    """The model's workload at batch 1 (traced in eval mode; no FLOPs run)."""
    import hwmodel

    model.eval()
    try:
        return hwmodel.extract_workload(
            model, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32), batch=1
        )
    finally:
        model.train()


def hardware_report(model: nnx.Module, input_shape: tuple[int, ...], arch: str,
                    dataflow: str = "rs") -> dict[str, Any]:
    """Energy, latency and traffic of one inference (batch 1) on an accelerator.

    The dense model is mapped with ``hwmodel.map_workload`` (objective: energy) and
    costed with ``hwmodel.cost``: simulated figures from the analytical loop-nest
    model, not measurements.

    Args:
      model: the (trained) model; traced in eval mode, no FLOPs run.
      input_shape: one image's shape ``(H, W, C)``.
      arch: a preset name (``hwmodel.list_presets()``) or a YAML file.
      dataflow: one of ``hwmodel.DATAFLOWS``.

    Returns:
      A dict: ``hw_arch``, ``hw_dataflow``, ``energy_per_inference_uj`` (uJ),
      ``latency_per_inference_ms`` (ms), ``power_mw`` (mW),
      ``dram_bytes_per_inference`` (bytes), ``hw_utilization`` (0-1),
      ``hw_area_mm2`` (mm^2).
    """
    return _hardware_figures(_workload(model, input_shape), arch, dataflow)


def _hardware_figures(workload, arch: str, dataflow: str) -> dict[str, Any]:
    """:func:`hardware_report` of an already extracted batch-1 workload."""
    import hwmodel

    hw = hwmodel.load_arch(arch)
    c = hwmodel.cost(workload, hw, dataflow=dataflow)
    return {
        "hw_arch": hw.name,
        "hw_dataflow": dataflow,
        "energy_per_inference_uj": float(c.energy_pj) * 1e-6,
        "latency_per_inference_ms": float(c.latency_s) * 1e3,
        "power_mw": float(c.power_w) * 1e3,
        "dram_bytes_per_inference": float(c.dram_bytes),
        "hw_utilization": float(c.utilization),
        "hw_area_mm2": float(c.area_mm2),
    }


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------


def _log(msg: str) -> None:
    if jax.process_index() == 0:
        print(msg, flush=True)


def _prepare_workdir(config: Config, workdir: Path, *, resume: bool, overwrite: bool) -> bool:
    """Check/clear ``workdir``; returns True when an existing run is to be continued."""
    cfg_path = workdir / "config.json"
    if not cfg_path.exists():
        if (workdir / CHECKPOINT_DIR).exists():
            if not overwrite:
                raise WorkdirConflictError(
                    f"workdir {workdir} has a {CHECKPOINT_DIR}/ directory but no config.json; "
                    "pass --overwrite to discard it or choose another --workdir"
                )
            shutil.rmtree(workdir / CHECKPOINT_DIR)
        return False
    if overwrite:
        if jax.process_index() == 0:
            shutil.rmtree(workdir / CHECKPOINT_DIR, ignore_errors=True)
            for name in RUN_FILES:
                (workdir / name).unlink(missing_ok=True)
        return False
    old = Config.from_json(cfg_path.read_text(encoding="utf-8"), where=str(cfg_path))
    diff = config_diff(old, config)
    if diff:
        what = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
        hint = ("--resume continues only a run with the same config; " if resume else "")
        raise WorkdirConflictError(
            f"workdir {workdir} holds a run with a different config ({what}); "
            f"{hint}pass --overwrite to replace it, or choose another --workdir"
        )
    if not resume:
        raise WorkdirConflictError(
            f"workdir {workdir} already holds a run with this config; pass --resume to "
            "continue it or --overwrite to start over"
        )
    return True


def _init_distributed() -> None:
    """``jax.distributed.initialize()``, with process count/id from the environment if set."""
    kw = {}
    for var, arg in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        if os.environ.get(var):
            try:
                kw[arg] = int(os.environ[var])
            except ValueError:
                raise ConfigError(f"environment variable {var}={os.environ[var]!r} is not an integer") from None
    jax.distributed.initialize(**kw)


def _make_mesh(config: Config) -> Mesh:
    devices = jax.devices()
    n = config.num_devices or len(devices)
    if n > len(devices):
        raise ConfigError(
            f"config field 'num_devices': {n} requested, {len(devices)} available "
            f"({devices[0].platform}); valid: 0 (all) or 1..{len(devices)}"
        )
    for name in ("batch_size", "eval_batch_size"):
        if getattr(config, name) % n:
            raise ConfigError(
                f"config field {name!r}: {getattr(config, name)} is not divisible by the "
                f"{n} data-parallel devices"
            )
    return Mesh(np.array(devices[:n]), ("data",))


def _replicate(tree: Any, sharding: NamedSharding) -> Any:
    """Place host/device values (identical on every process) replicated over the mesh."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x):
        if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
            impl = jax.random.key_impl(x)
            data = jax.make_array_from_process_local_data(sharding, np.asarray(jax.random.key_data(x)))
            return jax.random.wrap_key_data(data, impl=impl)
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, x, x.shape)

    return jax.tree.map(put, tree)


def _put_batch(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """Place one global batch (identical on every process) sharded along axis 0."""
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    n, i = jax.process_count(), jax.process_index()
    per = x.shape[0] // n
    return jax.make_array_from_process_local_data(sharding, x[i * per:(i + 1) * per], x.shape)


@dataclasses.dataclass
class _Fns:
    train: Callable
    evaluate: Callable
    all_finite: Callable


def _build_fns(config: Config, graphdef_train, graphdef_eval, state, mean, std, mesh: Mesh,
               image_shape: tuple[int, ...]) -> _Fns:
    """Compile the split/merge train/eval functions (AOT, so epochs time only steps)."""
    from codesign.data import augment_cifar, normalize

    repl = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P("data"))
    base_key = jax.random.key(config.seed)
    ls = float(config.label_smoothing)
    mean, std = tuple(mean), tuple(std)

    def train_fn(state, acc, images, labels, epoch, step):
        x = images.astype(jnp.float32)
        if config.augment:  # on the 0..255 scale, so the crop's padding is black
            key = jax.random.fold_in(jax.random.fold_in(base_key, epoch), step)
            x = augment_cifar(key, x)
        x = normalize(x, mean, std)
        model, opt = nnx.merge(graphdef_train, state)
        loss_sum, correct = _train_step_body(model, opt, x, labels, ls)
        n = jnp.float32(labels.shape[0])
        return nnx.state((model, opt)), acc + jnp.stack([loss_sum, correct.astype(jnp.float32), n])

    def eval_fn(state, images, labels, mask):
        model, _ = nnx.merge(graphdef_eval, state)
        return _eval_body(model, normalize(images, mean, std), labels, mask)

    def all_finite(state):
        leaves = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
        return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))

    b, eb = config.batch_size, config.eval_batch_size
    u8 = lambda n: jax.ShapeDtypeStruct((n, *image_shape), jnp.uint8, sharding=data)  # noqa: E731
    i32 = lambda n: jax.ShapeDtypeStruct((n,), jnp.int32, sharding=data)  # noqa: E731
    st = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), state)
    acc = jax.ShapeDtypeStruct((3,), jnp.float32, sharding=repl)
    scalar = jax.ShapeDtypeStruct((), jnp.int32, sharding=repl)
    train_c = jax.jit(
        train_fn, in_shardings=(repl, repl, data, data, repl, repl),
        out_shardings=(repl, repl), donate_argnums=(0, 1),
    ).lower(st, acc, u8(b), i32(b), scalar, scalar).compile()
    eval_c = jax.jit(
        eval_fn, in_shardings=(repl, data, data, data), out_shardings=repl,
    ).lower(st, u8(eb), i32(eb), jax.ShapeDtypeStruct((eb,), jnp.bool_, sharding=data)).compile()
    finite_c = jax.jit(all_finite, in_shardings=(repl,), out_shardings=repl).lower(st).compile()
    return _Fns(train_c, eval_c, finite_c)


def _evaluate(fns: _Fns, state, ds, batch_size: int, mesh: Mesh) -> dict[str, float]:
    """Loss and accuracy over a whole split (last batch padded and masked)."""
    data = NamedSharding(mesh, P("data"))
    n = len(ds)
    total = None
    for start in range(0, n, batch_size):
        x = ds.images[start:start + batch_size]
        y = ds.labels[start:start + batch_size]
        m = np.ones(len(y), bool)
        if len(y) < batch_size:
            pad = batch_size - len(y)
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros(pad, y.dtype)])
            m = np.concatenate([m, np.zeros(pad, bool)])
        s = fns.evaluate(state, _put_batch(x, data), _put_batch(y.astype(np.int32), data), _put_batch(m, data))
        total = s if total is None else total + s
    loss_sum, correct, count = (float(v) for v in np.asarray(total))
    return {"loss": loss_sum / count, "accuracy": correct / count}


def _epoch_batches(ds, config: Config, epoch: int, steps: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    from codesign.data import iterate_batches

    it = iterate_batches(ds, config.batch_size, seed=config.seed, epoch=epoch, shuffle=True,
                         drop_remainder=True)
    return itertools.islice(it, steps)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    # Off when stderr is not a terminal (logs get the one-line epoch summaries instead).
    show = enabled and jax.process_index() == 0 and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="step", disable=not show,
                leave=True, dynamic_ncols=True, file=sys.stderr)


def _with_conv_backend(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Runs ``fn(config, ...)`` with ``config.conv_backend`` resolved and set, then restores it."""

    @functools.wraps(fn)
    def wrapper(config: Config, *args: Any, **kwargs: Any) -> Any:
        import models

        try:
            conv = models.resolve_conv_backend(config.conv_backend)
        except models.OneDNNUnavailable as e:
            raise ConfigError(f"config field 'conv_backend': {e}") from None
        with models.conv_backend(conv):
            return fn(config, *args, **kwargs)

    return wrapper


@_with_conv_backend
def train_and_evaluate(config: Config, workdir: str | Path, *, resume: bool = False,
                       overwrite: bool = False, print_table: bool = True) -> dict[str, Any]:
    """Train ``config.model`` on ``config.dataset`` and evaluate it; write the run to ``workdir``.

    Writes (atomically) ``workdir/config.json`` (the config), ``workdir/metrics.jsonl``
    (one JSON line per epoch: ``epoch``, ``train_loss``, ``train_accuracy``,
    ``val_loss``/``val_accuracy`` when ``val_size > 0``, ``test_loss``/``test_accuracy``
    otherwise, ``lr`` (at the epoch's last step), ``epoch_time_s`` (training steps
    only), ``eval_time_s``, ``images_per_s``), ``workdir/report.json`` (see Returns)
    and Orbax checkpoints in ``workdir/checkpoints/<epoch>`` (the last
    ``keep_checkpoints``).

    Args:
      config: the run.
      workdir: the run directory (created if missing).
      resume: continue the run in ``workdir`` from its latest checkpoint (the config
        must match except :data:`codesign.config.RUNTIME_FIELDS`).
      overwrite: discard a run already in ``workdir``.
      print_table: print the results table at the end.

    Returns:
      The report dict: ``model``, ``dataset``, ``test_accuracy``, ``test_loss``,
      ``params``, ``macs`` (per image, batch 1; None if unavailable, with
      ``macs_note``), ``batch_size``, ``epochs``, ``wall_time_s`` (seconds, all
      sessions of this run, including start-up, compilation and evaluation),
      ``train_time_s`` (seconds in training steps), ``compile_time_s``,
      ``images_per_s`` (training images per second of ``train_time_s``),
      ``num_devices``, ``platform``, ``conv_backend`` (what ``config.conv_backend``
      resolved to: ``"onednn"`` or ``"xla"``), ``resumed_from_epoch``.

    Raises:
      WorkdirConflictError: ``workdir`` holds another run (see ``resume``/``overwrite``).
      NonFiniteLossError: the loss or a parameter became NaN/Inf (the last good
        checkpoint is kept).
      ConfigError: an invalid or inconsistent config.
    """
    t_start = time.perf_counter()
    if resume and overwrite:
        raise ConfigError("resume and overwrite are mutually exclusive")
    if config.distributed and not jax.distributed.is_initialized():
        _init_distributed()
    validate_names(config)
    import models
    from codesign.data import load_dataset

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    continuing = _prepare_workdir(config, workdir, resume=resume, overwrite=overwrite)
    is_main = jax.process_index() == 0
    if is_main:
        atomic_write_text(workdir / "config.json", config.to_json())

    # Data
    splits = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download,
                          val_size=config.val_size, seed=config.seed, **config.dataset_kwargs)
    train_ds, test_ds = splits["train"], splits["test"]
    eval_name = "val" if config.val_size > 0 else "test"
    eval_ds = splits[eval_name]
    steps_per_epoch = len(train_ds) // config.batch_size
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
    if steps_per_epoch < 1:
        raise ConfigError(
            f"config field 'batch_size': {config.batch_size} is larger than the "
            f"{len(train_ds)} training examples of {config.dataset!r}"
        )
    image_shape = tuple(train_ds.images.shape[1:])

    # Model, optimizer, mesh, compiled steps
    mesh = _make_mesh(config)
    model, optimizer = create_train_state(config, input_shape=image_shape,
                                          num_classes=train_ds.num_classes,
                                          steps_per_epoch=steps_per_epoch)
    n_params = count_params(model)
    workload = _workload(model, image_shape)  # traced once: MACs and hardware figures
    macs, macs_note = int(workload.total_macs), MACS_NOTE
    hw_figures = ({} if config.hw_arch == "none"
                  else _hardware_figures(workload, config.hw_arch, config.hw_dataflow))
    schedule = make_schedule(config, steps_per_epoch)
    model.train()
    graphdef_train, state = nnx.split((model, optimizer))
    model.eval()
    graphdef_eval = nnx.graphdef((model, optimizer))
    model.train()
    repl = NamedSharding(mesh, P())
    data_sh = NamedSharding(mesh, P("data"))

    ckpt = Checkpointer(workdir / CHECKPOINT_DIR, keep=config.keep_checkpoints) if config.keep_checkpoints else None
    start_epoch, history, prior_elapsed, prior_train, resumed_from = 0, [], 0.0, 0.0, None
    if continuing and ckpt is not None:
        last = ckpt.latest_epoch()
        if last is not None:
            state, meta = ckpt.restore(last, state)
            start_epoch, history = int(meta["epoch"]), list(meta["history"])
            prior_elapsed, prior_train = float(meta["elapsed_s"]), float(meta["train_time_s"])
            resumed_from = start_epoch
            _log(f"resuming {workdir} from the checkpoint of epoch {start_epoch}/{config.epochs}")
        else:
            _log(f"no checkpoint in {workdir / CHECKPOINT_DIR}: starting from scratch")
    elif continuing:
        _log("keep_checkpoints=0: nothing to resume from, starting from scratch")
    if is_main:
        atomic_write_text(workdir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
    state = _replicate(state, repl)

    t_compile = time.perf_counter()
    fns = _build_fns(config, graphdef_train, graphdef_eval, state, train_ds.mean, train_ds.std,
                     mesh, image_shape)
    compile_s = time.perf_counter() - t_compile
    _log(
        f"{config.model} ({n_params:,} params) on {config.dataset} ({len(train_ds)} train, "
        f"{len(eval_ds)} {eval_name}); {steps_per_epoch} steps/epoch x {config.epochs} epochs, "
        f"batch {config.batch_size} on {mesh.size} {jax.devices()[0].platform} device(s); "
        f"compiled in {compile_s:.1f} s"
    )

    def last_good() -> str:
        if ckpt is None:
            return "checkpointing is off (keep_checkpoints=0), so no checkpoint was kept"
        ckpt.wait()
        e = ckpt.latest_epoch()
        return (f"the last good checkpoint (epoch {e}) is kept in {ckpt.directory}" if e is not None
                else "no checkpoint had been written yet")

    def non_finite(what: str) -> NonFiniteLossError:
        return NonFiniteLossError(
            f"non-finite {what}: stopping the run; {last_good()}. Lower the learning rate, "
            "set --grad-clip-norm, or check the data."
        )

    train_time = prior_train
    for epoch in range(start_epoch, config.epochs):
        acc = _replicate(np.zeros(3, np.float32), repl)
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}", config.progress)
        t0 = time.perf_counter()
        for step, (x, y) in enumerate(_epoch_batches(train_ds, config, epoch, steps_per_epoch)):
            state, acc = fns.train(state, acc, _put_batch(x, data_sh), _put_batch(y, data_sh),
                                   _replicate(np.int32(epoch), repl), _replicate(np.int32(step), repl))
            if (step + 1) % config.log_every == 0 or step + 1 == steps_per_epoch:
                loss_sum, correct, count = np.asarray(acc)
                if not math.isfinite(loss_sum):
                    bar.close()
                    raise non_finite(f"training loss ({loss_sum}) in epoch {epoch + 1}, step {step + 1}")
                bar.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{correct / count:.4f}", refresh=False)
            bar.update(1)
        jax.block_until_ready(acc)
        epoch_time = time.perf_counter() - t0
        bar.close()
        train_time += epoch_time
        loss_sum, correct, count = (float(v) for v in np.asarray(acc))
        t1 = time.perf_counter()
        ev = _evaluate(fns, state, eval_ds, config.eval_batch_size, mesh)
        eval_time = time.perf_counter() - t1
        if not math.isfinite(ev["loss"]) or not bool(fns.all_finite(state)):
            raise non_finite(f"parameters or {eval_name} loss ({ev['loss']}) after epoch {epoch + 1}")
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / count,
            "train_accuracy": correct / count,
            f"{eval_name}_loss": ev["loss"],
            f"{eval_name}_accuracy": ev["accuracy"],
            "lr": float(schedule((epoch + 1) * steps_per_epoch - 1)),
            "epoch_time_s": epoch_time,
            "eval_time_s": eval_time,
            "images_per_s": count / epoch_time,
        }
        history.append(row)
        _log(
            f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f} acc "
            f"{100 * row['train_accuracy']:.2f}% | {eval_name} loss {ev['loss']:.4f} acc "
            f"{100 * ev['accuracy']:.2f}% | lr {row['lr']:.3g} | {epoch_time:.1f} s, "
            f"{row['images_per_s']:,.0f} img/s"
        )
        if is_main:
            atomic_write_text(workdir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        if ckpt is not None:
            elapsed = prior_elapsed + time.perf_counter() - t_start
            ckpt.save(epoch + 1, state, {"epoch": epoch + 1, "history": history,
                                         "elapsed_s": elapsed, "train_time_s": train_time})

    if ckpt is not None:
        ckpt.close()
    # Final test evaluation (reuse the last epoch's when the per-epoch eval was the test set).
    if eval_name == "test" and history and "test_accuracy" in history[-1]:
        test = {"loss": history[-1]["test_loss"], "accuracy": history[-1]["test_accuracy"]}
    else:
        test = _evaluate(fns, state, test_ds, config.eval_batch_size, mesh)
    # Hand the trained state back to the Python model (e.g. for callers inspecting it).
    nnx.update((model, optimizer), jax.device_get(state))

    images = sum(h["images_per_s"] * h["epoch_time_s"] for h in history)
    report = {
        "model": config.model,
        "dataset": config.dataset,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "params": n_params,
        "macs": macs,
        "macs_note": macs_note,
        "batch_size": config.batch_size,
        "epochs": config.epochs,
        "wall_time_s": prior_elapsed + time.perf_counter() - t_start,
        "train_time_s": train_time,
        "compile_time_s": compile_s,
        "images_per_s": images / train_time if train_time > 0 else None,
        **hw_figures,
        "num_devices": mesh.size,
        "platform": jax.devices()[0].platform,
        "conv_backend": models.get_conv_backend(),
        "resumed_from_epoch": resumed_from,
    }
    if is_main:
        atomic_write_json(workdir / "report.json", report)
        if print_table:
            print("\n" + results_table([report]), flush=True)
    return report
