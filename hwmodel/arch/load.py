"""Architecture presets shipped as YAML files in ``hwmodel/arch/presets/`` and the loader.

Each preset file starts with a comment block giving the provenance of every number
and the command that prints the resulting table::

    python -c "import hwmodel; print(hwmodel.load_arch('eyeriss').describe())"
"""

from __future__ import annotations

import os
from importlib import resources

from hwmodel.arch.architecture import Architecture
from hwmodel.arch.yaml_read import parse_arch_yaml

__all__ = ["list_presets", "preset_path", "load_arch"]


def _preset_dir():
    return resources.files("hwmodel.arch") / "presets"


def list_presets() -> tuple[str, ...]:
    """Names of the shipped architecture presets, sorted (e.g. ``"eyeriss"``)."""
    return tuple(sorted(p.name[: -len(".yaml")] for p in _preset_dir().iterdir()
                        if p.name.endswith(".yaml")))


def preset_path(name: str) -> str:
    """Path of a preset's YAML file (copy it to start your own architecture).

    Raises:
      ValueError: unknown preset (lists the presets).
    """
    if name not in list_presets():
        raise ValueError(f"unknown architecture preset {name!r}; presets: {list(list_presets())}")
    return os.fspath(_preset_dir() / f"{name}.yaml")


def load_arch(name_or_path, *, ert=None) -> Architecture:
    """Load an architecture: a preset name or a YAML file.

    Args:
      name_or_path: a preset name from :func:`list_presets` or a path to a ``.yaml``
        / ``.yml`` file (see :mod:`hwmodel.arch.yaml_read` for the format).
      ert: optional Accelergy energy reference table (path to ``ERT.yaml`` /
        ``ERT_summary.yaml``, a parsed :class:`hwmodel.ERT`, or a dict): its energies
        replace the file's for every level with an ``ert`` key (and the MAC with
        ``mac_ert``); overrides the file's ``ert_file``.

    Returns:
      A validated :class:`Architecture` (float32 leaves).

    Raises:
      ArchitectureError (ValueError): an invalid file, with ``file:line``, what is
        wrong and what is valid.
      ValueError: neither a preset nor an existing file (lists the presets).
    """
    s = os.fspath(name_or_path)
    is_path = (not isinstance(name_or_path, str)) or s.endswith((".yaml", ".yml")) or os.sep in s
    if not is_path and s in list_presets():
        path = preset_path(s)
    elif os.path.isfile(s):
        path = s
    elif is_path:
        raise ValueError(f"architecture file {s!r} not found; valid: an existing .yaml file or a "
                         f"preset name {list(list_presets())}")
    else:
        raise ValueError(f"unknown architecture {s!r}; valid: a preset {list(list_presets())} "
                         "or a path to a .yaml file")
    with open(path) as f:
        text = f.read()
    return parse_arch_yaml(text, path, ert=ert)

