"""Accelergy energy reference tables (ERT) as an energy source for architectures.

Accelergy (Wu, Emer, Sze, ICCAD 2019) writes ``ERT.yaml``::

    ERT:
      version: 0.3
      tables:
      - name: eyeriss_like.PE[0..167].ifmap_spad
        actions:
        - name: read
          arguments: {address_delta: 1, data_delta: 1}
          energy: 0.24
        - name: read
          arguments: {address_delta: 0, data_delta: 0}
          energy: 0.05
        - name: write
          ...

and ``ERT_summary.yaml`` (``ERT_summary: table_summary: [{name, actions: [{name,
energy | max_energy, average_energy, min_energy}]}]``).  Both are read.  Energies
are pJ per action.

Mapping onto our levels (written in the architecture YAML):

* A level's ``ert`` key names the component(s): one name for all operands,
  ``{W: NAME, I: NAME, O: NAME}`` (one per operand), or ``{read: NAME-or-{W,I,O},
  write: NAME-or-{W,I,O}, read_action, write_action, words_per_action}``.  A name matches a table whose full name equals it, or whose
  last dotted segment with ``[..]`` ranges removed equals it (``ifmap_spad`` matches
  ``eyeriss_like.PE[0..167].ifmap_spad``), or whose range-free full name ends with
  ``.NAME``.  Zero or several matches are errors listing the candidates.
* Read energy: the action ``read_action`` if given, else the first present of
  ``read``, ``transfer_random``, ``transfer``.  Write energy: ``write_action``, else
  the first of ``write``, ``update``, ``fill``, ``transfer_random``, ``transfer``.
  MAC (``mac_ert``): ``action`` if given, else the first of ``mac_random``, ``mac``,
  ``compute``.
* An action listed several times with different ``arguments`` (data / address
  toggling) counts at its **highest** energy (random data; in ``ERT_summary`` the
  ``max_energy``): our model does not track data values.
* Energy per word = action energy / ``words_per_action`` (e.g. a 64-bit SRAM access
  of 16-bit words: 4, as Timeloop's block size).

Example: the ``eyeriss_45nm`` preset names the components of the Accelergy /
Timeloop ``eyeriss_like`` design (``DRAM``, ``shared_glb``, ``ifmap_NoC`` ...,
``weights_spad``, ``ifmap_spad``, ``psum_spad``, ``mac``), so
``load_arch("eyeriss_45nm", ert="ERT.yaml")`` takes every energy from that ERT.
"""

from __future__ import annotations

import dataclasses
import os
import re

import yaml

from hwmodel.arch import yaml_nodes as yn
from hwmodel.arch.architecture import ArchitectureError
from hwmodel.arch.kinds import OPERANDS

__all__ = ["ERT", "load_ert", "as_ert", "parse_ert_text"]

READ_ACTIONS = ("read", "transfer_random", "transfer")
WRITE_ACTIONS = ("write", "update", "fill", "transfer_random", "transfer")
MAC_ACTIONS = ("mac_random", "mac", "compute")


@dataclasses.dataclass(frozen=True)
class ERT:
    """A parsed energy reference table.

    Attributes:
      file: where it came from (for messages).
      tables: ``{full component name: {action name: energy pJ (max over variants)}}``.
      lines: ``{full component name: 1-based line of the table}``.
    """

    file: str
    tables: dict
    lines: dict

    def short_names(self) -> list[str]:
        return sorted({_short(n) for n in self.tables})

    def find(self, name: str) -> list[str]:
        """Full names of the tables that ``name`` matches (see module docstring)."""
        if name in self.tables:
            return [name]
        q = _strip(name)
        return [n for n in self.tables if _short(n) == q or _strip(n).endswith("." + q)]

    def energy(self, name: str, actions, *, explicit: bool) -> tuple[str, str, float]:
        """(full name, action, pJ) for ``name``; raises ValueError(msg, valid)."""
        hits = self.find(name)
        if not hits:
            raise ValueError(f"ERT {self.file} has no component {name!r}",
                             f"one of {self.short_names()}")
        if len(hits) > 1:
            raise ValueError(f"ERT component name {name!r} is ambiguous in {self.file}: {sorted(hits)}",
                             "a full component name")
        full = hits[0]
        acts = self.tables[full]
        for a in actions:
            if a in acts:
                return full, a, acts[a]
        raise ValueError(f"ERT component {full!r} (line {self.lines[full]}) has no action "
                         f"{actions[0] if explicit else ' / '.join(actions)}",
                         f"one of {sorted(acts)}")


def _strip(name: str) -> str:
    return re.sub(r"\[[^\]]*\]", "", name)


def _short(name: str) -> str:
    return _strip(name).split(".")[-1]


def _fail(file, node, msg, valid):
    line = node.start_mark.line + 1 if node is not None else "?"
    return ArchitectureError(f"{file}:{line}: {msg}; valid: {valid}", file=file)


def _num(file, node, where) -> float:
    if isinstance(node, yaml.ScalarNode):
        if node.tag in (yn.TAG + "int", yn.TAG + "float"):
            return float(yaml.safe_load(node.value))
        if node.tag == yn.TAG + "str":
            try:
                return float(node.value)
            except ValueError:
                pass
    raise _fail(file, node, f"{where} must be a number (pJ)", "a number of pJ")


def _map(node) -> dict:
    return {k.value: v for k, v in node.value} if isinstance(node, yaml.MappingNode) else {}


def parse_ert_text(text: str, file: str = "<ERT>") -> ERT:
    """Parse Accelergy ``ERT.yaml`` / ``ERT_summary.yaml`` text.

    Raises:
      ArchitectureError: not an ERT (with file, line and the expected layout).
    """
    layout = "an Accelergy ERT: 'ERT: {tables: [{name, actions: [{name, energy}]}]}' or ERT_summary"
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ArchitectureError(f"{file}:{mark.line + 1 if mark else '?'}: not valid YAML: "
                                f"{getattr(e, 'problem', e)}; valid: {layout}", file=file) from None
    top = _map(root)
    if "ERT" in top:
        body, key, summary = _map(top["ERT"]), "tables", False
    elif "ERT_summary" in top:
        body, key, summary = _map(top["ERT_summary"]), "table_summary", True
    else:
        raise _fail(file, root, f"no top-level 'ERT' or 'ERT_summary' key (found {list(top)})", layout)
    tl = body.get(key)
    if not isinstance(tl, yaml.SequenceNode):
        raise _fail(file, tl if tl is not None else root, f"missing list '{key}'", layout)
    tables, lines = {}, {}
    for t in tl.value:
        tm = _map(t)
        if "name" not in tm or "actions" not in tm or not isinstance(tm["actions"], yaml.SequenceNode):
            raise _fail(file, t, "a table needs 'name' and a list 'actions'", layout)
        name = tm["name"].value
        if name in tables:
            raise _fail(file, t, f"component {name!r} listed twice (first on line {lines[name]})",
                        "each component once")
        acts: dict[str, float] = {}
        for a in tm["actions"].value:
            am = _map(a)
            if "name" not in am:
                raise _fail(file, a, f"an action of {name!r} has no name", layout)
            an = am["name"].value
            if "energy" in am:
                e = _num(file, am["energy"], f"{name}.{an}.energy")
            elif summary and "max_energy" in am:
                e = _num(file, am["max_energy"], f"{name}.{an}.max_energy")
            else:
                raise _fail(file, a, f"action {an!r} of {name!r} has no energy",
                            "'energy' (or 'max_energy' in an ERT_summary)")
            acts[an] = max(acts.get(an, e), e)
        tables[name] = acts
        lines[name] = t.start_mark.line + 1
    return ERT(file=file, tables=tables, lines=lines)


def load_ert(path) -> ERT:
    """Read an Accelergy ``ERT.yaml`` or ``ERT_summary.yaml`` file.

    Args:
      path: file path.

    Returns:
      The parsed :class:`ERT`.
    """
    path = os.fspath(path)
    with open(path) as f:
        return parse_ert_text(f.read(), path)


def as_ert(source) -> ERT:
    """An :class:`ERT` from a path, a parsed ERT, or a dict shaped like ERT.yaml."""
    if isinstance(source, ERT):
        return source
    if isinstance(source, dict):
        return parse_ert_text(yaml.safe_dump(source), "<ERT dict>")
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"ERT file {os.fspath(source)!r} not found; valid: a path to an "
                                    "Accelergy ERT.yaml / ERT_summary.yaml")
        return load_ert(source)
    raise TypeError(f"ert must be a path, an ERT or a dict, got {type(source).__name__}")


# ----------------------------------------------------------------------------------
# The `ert` keys of an architecture file
# ----------------------------------------------------------------------------------

_SPEC_KEYS = ("read", "write", "read_action", "write_action", "words_per_action")


@dataclasses.dataclass(frozen=True)
class LevelSpec:
    read: dict       # op -> component name
    write: dict      # op -> component name
    read_action: str | None
    write_action: str | None
    words_per_action: float


def parse_level_spec(ctx, node, where, ops) -> LevelSpec:
    """Read a level's ``ert`` value (see module docstring) with the YAML context."""
    def names(n, w):
        if isinstance(n, yaml.MappingNode):
            m = yn.mapping(ctx, n, w, ops, required=ops)
            return {x: yn.text(ctx, m[x], f"{w}.{x}") for x in ops}
        nm = yn.text(ctx, n, w)
        return {x: nm for x in ops}

    if isinstance(node, yaml.ScalarNode) or (
        isinstance(node, yaml.MappingNode) and node.value
        and all(isinstance(k, yaml.ScalarNode) and k.value in OPERANDS for k, _ in node.value)
    ):
        r = names(node, f"{where}.ert")
        return LevelSpec(r, r, None, None, 1.0)
    m = yn.mapping(ctx, node, f"{where}.ert", _SPEC_KEYS, required=("read",))
    r = names(m["read"], f"{where}.ert.read")
    w = names(m["write"], f"{where}.ert.write") if "write" in m else r
    ra = yn.text(ctx, m["read_action"], f"{where}.ert.read_action") if "read_action" in m else None
    wa = yn.text(ctx, m["write_action"], f"{where}.ert.write_action") if "write_action" in m else None
    wpa = yn.number(ctx, m["words_per_action"], f"{where}.ert.words_per_action") if "words_per_action" in m else 1.0
    if not wpa > 0:
        raise ctx.err(m["words_per_action"], f"{where}.ert.words_per_action is {wpa:g}", "a positive number")
    return LevelSpec(r, w, ra, wa, wpa)


def level_energies(ctx, table: ERT, spec: LevelSpec, node, where):
    """({op: read pJ/word}, {op: write pJ/word}) from the ERT for one level."""
    out = []
    for comps, act, default in ((spec.read, spec.read_action, READ_ACTIONS),
                                (spec.write, spec.write_action, WRITE_ACTIONS)):
        acts = (act,) if act else default
        d = {}
        for x, comp in comps.items():
            try:
                _, _, e = table.energy(comp, acts, explicit=act is not None)
            except ValueError as err:
                msg, valid = err.args
                raise ctx.err(node, f"{where}.ert: {msg}", valid) from None
            d[x] = e / spec.words_per_action
        out.append(d)
    return out[0], out[1]


@dataclasses.dataclass(frozen=True)
class MacSpec:
    component: str
    action: str | None


def parse_mac_spec(ctx, node) -> MacSpec:
    if isinstance(node, yaml.ScalarNode):
        return MacSpec(yn.text(ctx, node, "mac_ert"), None)
    m = yn.mapping(ctx, node, "mac_ert", ("component", "action"), required=("component",))
    return MacSpec(yn.text(ctx, m["component"], "mac_ert.component"),
                   yn.text(ctx, m["action"], "mac_ert.action") if "action" in m else None)


def mac_energy(ctx, table: ERT, spec: MacSpec, node) -> float:
    acts = (spec.action,) if spec.action else MAC_ACTIONS
    try:
        return table.energy(spec.component, acts, explicit=spec.action is not None)[2]
    except ValueError as err:
        msg, valid = err.args
        raise ctx.err(node, f"mac_ert: {msg}", valid) from None

