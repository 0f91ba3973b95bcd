"""``codesign train``: a thin command line over :func:`codesign.train.train_and_evaluate`.

Usage::

    codesign train [PRESET] [--FIELD VALUE ...] [--workdir DIR] [--resume | --overwrite]

Every :class:`codesign.config.Config` field is an option (``learning_rate`` ->
``--learning-rate``; booleans take ``--augment`` / ``--no-augment``; dict fields take
JSON). Options override the preset, which overrides the Config defaults. Bad input
(unknown preset/model/dataset/option, invalid value) prints ONE line on stderr naming
the valid choices and exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import difflib
import itertools
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, NoReturn

from codesign._config import PRESETS, Config, ConfigError, list_presets, loads_strict

PROG = "codesign train"


class _OneLineError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (no usage dump) and never exits itself."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            flags = [o for a in self._actions for o in a.option_strings]
            hints = []
            for arg in message.split(":", 1)[1].split():
                if arg.startswith("--"):
                    close = difflib.get_close_matches(arg.split("=")[0], flags, n=3, cutoff=0.5)
                    if close:
                        hints.append(f"{arg}: did you mean {' or '.join(close)}?")
            message += ("; " + "; ".join(hints) if hints else "") + f" (see {self.prog} --help)"
        raise _OneLineError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _json_dict(text: str) -> dict:
    try:
        v = loads_strict(text, where="JSON")
    except ConfigError as e:
        raise argparse.ArgumentTypeError(f"{e}: {text!r}") from None
    if not isinstance(v, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"key\": 1}}', got {text!r}")
    return v


def _opt_str(text: str) -> str | None:
    return None if text.lower() in ("none", "") else text


def _presets_help() -> str:
    lines = ["presets (each docstring: command and measured result):"]
    for name, fn in PRESETS.items():
        doc = (fn.__doc__ or "").strip().splitlines()
        lines.append(f"  {name:<14} {doc[0] if doc else ''}")
    return "\n".join(lines)


def _choices(kind: str) -> tuple[str, ...]:
    if kind == "models":
        import models

        return tuple(models.list_models())
    if kind == "datasets":
        from codesign.data import DATASETS

        return tuple(DATASETS)
    if kind == "dataflows":
        import hwmodel

        return tuple(hwmodel.DATAFLOWS)
    raise AssertionError(kind)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser, generated from the :class:`Config` fields."""
    p = _Parser(
        prog=PROG,
        description=textwrap.fill(
            "Train a model from the zoo on a dataset, evaluate it, and write config.json, "
            "metrics.jsonl, report.json and per-epoch checkpoints into --workdir. "
            "Options override the preset's values, which override the defaults shown.", 80
        ),
        epilog=_presets_help() + "\n\nexample: codesign train mnist --data-dir ~/data/mnist --epochs 5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("preset", nargs="?", default=None, metavar="PRESET",
                   help=f"named preset: {', '.join(list_presets())} (default: no preset, Config defaults)")
    run = p.add_argument_group("run")
    run.add_argument("--workdir", default=None, metavar="DIR",
                     help="run directory (default: a new runs/<preset or model-dataset>-"
                          "<timestamp>[-k], unique even for runs started at once)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the run in --workdir from its latest checkpoint (same config)")
    mode.add_argument("--overwrite", action="store_true",
                      help="discard the run already in --workdir and start over")
    run.add_argument("--config", default=None, metavar="FILE",
                     help="start from this config.json (e.g. a previous run's) instead of a preset")
    run.add_argument("--print-config", action="store_true",
                     help="print the resolved config as JSON and exit without training")
    run.add_argument("--list-presets", action="store_true",
                     help="list the presets with their full docstrings and exit")

    cfg = p.add_argument_group("config fields (codesign.config.Config)")
    for f in dataclasses.fields(Config):
        help_ = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        choices = f.metadata.get("choices")
        if f.type == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        elif f.type == "int":
            kw["type"], kw["metavar"] = int, "N"
        elif f.type == "float":
            kw["type"], kw["metavar"] = float, "X"
        elif f.type == "dict":
            kw["type"], kw["metavar"] = _json_dict, "JSON"
        elif f.type == "str | None":
            kw["type"], kw["metavar"] = _opt_str, f.metadata.get("metavar", "STR")
        else:
            kw["type"], kw["metavar"] = str, "STR"
        if isinstance(choices, tuple):
            kw["metavar"] = "{" + ",".join(choices) + "}"
            help_ += f"; one of {', '.join(choices)}"
        elif choices in ("models", "datasets", "dataflows"):
            kw["metavar"] = "NAME"
            help_ += f"; one of {', '.join(_choices(choices))}"
        shown = json.dumps(default) if isinstance(default, dict) else default
        cfg.add_argument(_flag(f.name), help=f"{help_} (default: {shown})", **kw)
    return p


def _resolve(ns: argparse.Namespace) -> Config:
    if ns.preset is not None and ns.config is not None:
        raise ConfigError("give either a PRESET or --config FILE, not both")
    if ns.resume and ns.preset is None and ns.config is None and ns.workdir is not None:
        # `codesign train --workdir DIR --resume`: the run's own config.json is the base.
        ns.config = str(Path(ns.workdir) / "config.json")
    if ns.config is not None:
        try:
            text = Path(ns.config).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"--config: cannot read {ns.config} ({e.strerror})") from None
        base = Config.from_json(text, where=ns.config)
    elif ns.preset is not None:
        if ns.preset not in PRESETS:
            raise ConfigError(f"unknown preset {ns.preset!r}; valid: {', '.join(PRESETS)}")
        base = PRESETS[ns.preset]()
    else:
        base = Config()
    changes = {f.name: getattr(ns, f.name) for f in dataclasses.fields(Config) if hasattr(ns, f.name)}
    cfg = base.replace(**changes) if changes else base
    for f in dataclasses.fields(Config):
        kind = f.metadata.get("choices")
        if kind in ("models", "datasets", "dataflows"):
            valid = _choices(kind)
            value = getattr(cfg, f.name)
            if value not in valid:
                what = {"models": "model", "datasets": "dataset", "dataflows": "dataflow"}[kind]
                raise ConfigError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return cfg


def _now() -> datetime.datetime:
    return datetime.datetime.now()


def claim_new_workdir(stem: str, root: str | os.PathLike = "runs") -> Path:
    """Create a new, empty run directory ``root/<stem>-<YYYYmmdd-HHMMSS>[-<k>]`` and return it.

    The directory is created with ``os.mkdir``, which fails when the name exists, so
    runs started at once (a sweep, the same second) each get their own directory:
    the first takes the bare timestamp, the next ones ``-2``, ``-3``, ...
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base = f"{stem}-{_now().strftime('%Y%m%d-%H%M%S')}"
    for k in itertools.count(1):
        path = root / (base if k == 1 else f"{base}-{k}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")


def _drop_if_empty(path: Path) -> bool:
    """Remove ``path`` if it is an empty directory (a claimed workdir nothing was written to)."""
    try:
        path.rmdir()
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``codesign train``; returns the exit status (0 ok, 1 run failed, 2 usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        ns = parser.parse_args(argv)
        if ns.list_presets:
            for name, fn in PRESETS.items():
                doc = (fn.__doc__ or "").strip().splitlines()
                print(f"{name}:\n    " + "\n    ".join(line.strip() for line in doc) + "\n")
            return 0
        cfg = _resolve(ns)
        if ns.print_config:
            print(cfg.to_json(), end="")
            return 0
        if ns.resume and ns.workdir is None:
            raise ConfigError("--resume needs --workdir DIR (the run to continue)")
    except (_OneLineError, ConfigError) as e:
        msg = str(e).replace("\n", " ")
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2

    from codesign.data import option_wording
    from codesign.train import NonFiniteLossError, WorkdirConflictError, train_and_evaluate

    # The default workdir is new and unique (claimed atomically); it is removed again
    # when the run fails before writing anything into it.
    claimed = ns.workdir is None
    workdir = claim_new_workdir(ns.preset or f"{cfg.model}-{cfg.dataset}") if claimed else ns.workdir
    try:
        with option_wording(cli=True):
            train_and_evaluate(cfg, workdir, resume=ns.resume, overwrite=ns.overwrite)
    except (ConfigError, WorkdirConflictError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:  # data files missing/corrupt, checkpoint mismatch, ...
        print(f"{PROG}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        from codesign.train import CHECKPOINT_DIR, _checkpoint_epochs

        if claimed and _drop_if_empty(Path(workdir)):
            print(f"{PROG}: interrupted before the run started", file=sys.stderr)
        elif _checkpoint_epochs(Path(workdir) / CHECKPOINT_DIR):
            print(f"{PROG}: interrupted; continue with: codesign train --workdir {workdir} --resume",
                  file=sys.stderr)
        else:
            print(f"{PROG}: interrupted before the first checkpoint; start again with the same "
                  f"command and --workdir {workdir}", file=sys.stderr)
        return 130
    finally:
        if claimed:
            _drop_if_empty(Path(workdir))
    print(f"run written to {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
