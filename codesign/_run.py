"""Load the model of a run directory (a training run or a saved pruned model).

Used by ``codesign cost --run WORKDIR`` and ``codesign count --run WORKDIR``:

* a training run (``config.json`` + Orbax ``checkpoints/``, as written by
  :func:`codesign.train.train_and_evaluate`): the model of the config is built
  (with its gates when the run trained gates), the parameters of the newest
  checkpoint are loaded, and a gated model is physically pruned
  (:func:`codesign.prune.prune_model`): what is counted and costed is the network
  that would be deployed, and its cost is the re-mapped exact figure;
* a pruned model directory (``pruned.json`` + ``params.npz``, see
  :mod:`codesign.prune`): loaded with :func:`codesign.prune.load_pruned`.

Every failure is a :class:`RunError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from flax import nnx

__all__ = ["RunError", "RunModel", "load_run_model"]

class RunError(ValueError):
    """A directory that is not a usable run (one-line message)."""


@dataclasses.dataclass
class RunModel:
    """A run's model, ready to count or cost.

    Attributes:
      model: the model in inference mode (pruned when the run trained gates).
      input_shape: per-example input shape ``(H, W, C)``.
      name: the zoo model name.
      what: one line saying what was loaded (for the report header).
    """

    model: nnx.Module
    input_shape: tuple[int, ...]
    name: str
    what: str


def _geometry(config) -> tuple[tuple[int, int, int], int]:
    """Input shape and class count of a config's dataset (no data is read)."""
    if config.dataset in ("mnist", "mnist-5k"):
        return (28, 28, 1), 10
    if config.dataset == "cifar10":
        return (32, 32, 3), 10
    kw = config.dataset_kwargs  # synthetic
    return tuple(int(v) for v in kw.get("shape", (28, 28, 1))), int(kw.get("num_classes", 10))


def _build_model(config) -> nnx.Module:
    """The model of a run config as training built it (fresh parameters): the zoo model,
    then :func:`codesign.energy.prepare_model` (learned gates for the gate methods, the
    budget multiplier); ``init_from`` is not read (the checkpoint replaces the weights)."""
    from codesign import energy
    from codesign.train import _build_model as build

    model = build(config, *_geometry(config))
    # the checkpoint replaces the weights: neither init_from nor its distillation teacher
    return energy.prepare_model(model, config.replace(init_from=None, distill_weight=0.0))


def _restore(model: nnx.Module, workdir: Path, config) -> int:
    """Load the newest checkpoint's model variables into ``model``; returns its epoch."""
    from codesign._checkpoint import CheckpointMismatchError, read_latest, unflatten_state
    from codesign.train import CHECKPOINT_DIR

    ckdir = workdir / CHECKPOINT_DIR
    if not ckdir.is_dir():
        raise RunError(f"run {workdir}: no {CHECKPOINT_DIR}/ directory (the run saved no "
                       "checkpoint: keep_checkpoints=0, or it has not finished an epoch)")
    epoch, flat = read_latest(ckdir)
    if epoch is None:
        raise RunError(f"run {workdir}: {ckdir} holds no complete checkpoint")
    # the checkpoint holds nnx.state((model, optimizer)): the model's variables are "0.*"
    mine = {k[2:]: v for k, v in flat.items() if k.startswith("0.")}
    try:
        state = unflatten_state(mine, nnx.state(model), where=f"checkpoint {ckdir / str(epoch)}")
    except CheckpointMismatchError as e:
        raise RunError(f"run {workdir}: {' '.join(str(e).split())}") from None
    nnx.update(model, state)
    return epoch


def load_run_model(workdir: str | os.PathLike) -> RunModel:
    """The model of a training run or of a saved pruned model (see the module doc).

    Raises:
      RunError: not a directory, neither ``config.json`` nor ``pruned.json``, an
        unreadable config, no checkpoint, a checkpoint that does not fit the config's
        model, a gated model that cannot be pruned.
    """
    import models
    from codesign.config import Config
    from codesign.prune import is_pruned_dir, load_pruned, prune_model, read_spec

    workdir = Path(workdir)
    if not workdir.is_dir():
        raise RunError(f"--run {workdir}: no such directory")
    if is_pruned_dir(workdir):
        try:
            spec = read_spec(workdir)
            model = load_pruned(workdir)
        except ValueError as e:
            raise RunError(" ".join(str(e).split())) from None
        shape = tuple(spec.model_kwargs.get("input_shape")
                      or models.get_info(spec.model).default_input_shape)
        kept = sum(len(k) for k in spec.sites.values())
        total = sum(spec.sizes.values())
        return RunModel(model, shape, spec.model,
                        f"pruned {spec.model} from {workdir} ({kept} of {total} gated units kept)")
    cfg_path = workdir / "config.json"
    if not cfg_path.is_file():
        raise RunError(f"--run {workdir}: not a run directory (no config.json from codesign train, "
                       "nor a pruned.json from codesign.prune.save_pruned)")
    try:
        config = Config.from_json(cfg_path.read_text(encoding="utf-8"), where=str(cfg_path))
    except (OSError, ValueError) as e:
        raise RunError(" ".join(str(e).split())) from None
    try:
        model = _build_model(config)
    except (ValueError, TypeError) as e:
        raise RunError(f"run {workdir}: cannot build its model {config.model!r}: "
                       f"{' '.join(str(e).split())}") from None
    epoch = _restore(model, workdir, config)
    model.eval()
    shape = _geometry(config)[0]
    what = f"run {workdir}: {config.model}, checkpoint of epoch {epoch}"
    gated = [s for s in models.gate_sites(model) if type(s.gate) is not models.Gate]
    if gated:
        try:
            model, spec = prune_model(model, name=config.model, model_kwargs={
                **config.model_kwargs, "input_shape": shape, "num_classes": _geometry(config)[1]})
        except ValueError as e:
            raise RunError(f"run {workdir}: {' '.join(str(e).split())}") from None
        kept = sum(len(k) for k in spec.sites.values())
        what += f", gates pruned ({kept} of {sum(spec.sizes.values())} gated units kept)"
    if config.weight_bits or config.act_bits:
        what += f", quantized ({config.weight_bits or 'float'} / {config.act_bits or 'float'} bits)"
    return RunModel(model, shape, config.model, what)
