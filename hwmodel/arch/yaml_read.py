"""Strict YAML reader and writer for :class:`~hwmodel.Architecture` files.

The file format (every key is listed; nothing else is accepted)::

    name: eyeriss                 # required, string
    description: |                # optional, free text (provenance)
      ...
    energy_unit: MAC              # required: "pJ", or "MAC" (energies relative to one MAC)
    pj_per_unit: 2.0              # required iff energy_unit is MAC: pJ per unit
    pe_array: {rows: 12, cols: 14}       # required, integers >= 1
    clock: 200 MHz                # required: a number with Hz / kHz / MHz / GHz
    word_bits: 16                 # required: an integer, or {W: 8, I: 8, O: 32}
    mac_energy: 1                 # required, in energy_unit
    nonmac_energy: 1              # required, in energy_unit (element-wise op)
    sparsity: none                # optional: none (default) | gate | skip
    compression: none             # optional: none (default) | bitmask | rle
    rle_run_bits: 4               # optional, integer >= 1 (default 4)
    ert_file: ERT.yaml            # optional: Accelergy ERT (path relative to this file)
    mac_ert: mac                  # optional: ERT component (or {component, action}) for the MAC
    area:                         # required
      pe_mm2: 0.0227              #   mm^2 per PE (datapath + control)
      fixed_mm2: 4.56             #   mm^2 not scaling with PEs or storage
    levels:                       # required, outermost first
      - name: DRAM                # required, unique
        kind: dram                # required: dram | sram | noc | rf
        holds: [W, I, O]          # required except for noc: operands stored here
        per_pe: false             # optional (default false): one instance per PE
        size: 108 KB              # sram/rf: required; dram: optional (default
                                  #   'unlimited'); noc: not allowed.  Either one size
                                  #   (a pool shared by the held operands) or
                                  #   {W: .., I: .., O: .., total: ..} (per-operand
                                  #   partitions, optional shared total)
        bandwidth: 4              # words/cycle per instance; dram: required, others
                                  #   optional (default unlimited)
        energy: 200               # pJ (or MAC units) per word read or written, or
        read_energy: 200          #   read_energy + write_energy; each a number or
        write_energy: 200         #   {W: .., I: .., O: ..} (the held operands; a noc:
                                  #   all three, per word delivered to a PE)
        area_mm2_per_kb: 0.019    # sram/rf: required; dram/noc: optional, must be 0
        area_mm2_per_word_per_cycle: 0.01
                                  # optional (default 0), sram/rf/noc with a finite
                                  #   bandwidth: mm^2 per word/cycle of bandwidth per
                                  #   instance (banks, ports, wires); a design search
                                  #   searches the bandwidth of a level that has it
        ert: shared_glb           # optional: ERT component(s) for this level's energies

Units, exactly:

* sizes: ``"N b"`` / ``bit`` / ``bits`` (bits), ``"N B"`` / ``byte`` / ``bytes``
  (8 bits), ``KB`` = ``KiB`` = 1024 B, ``MB`` = ``MiB`` = 1024^2 B, ``GB`` = ``GiB``
  = 1024^3 B, or ``"N x B b"`` (N words of B bits).  A bare number is rejected
  (bits or bytes?), and so are ``kB`` / ``Kb`` / ``kb`` / ``Mb`` (ambiguous).
* clock: ``Hz``, ``kHz``, ``MHz``, ``GHz``.
* bandwidth: a bare number or ``"N words/cycle"``; ``"N bits/cycle"``,
  ``"N B/cycle"``; ``"N GB/s"`` / ``"N MB/s"`` (SI, 10^9 / 10^6 bytes per second) or
  ``GiB/s`` / ``MiB/s``, converted with the clock; bit and byte rates are converted
  to words of the *widest* operand the level holds (all operands for a NoC);
  ``unlimited``.
* energies: numbers in ``energy_unit``; PyYAML reads ``1e-3`` as text, so numeric
  text such as ``"1e-3"`` is accepted as a number.

The ``ert`` key of a level maps Accelergy energy-reference-table components onto the
level (see :mod:`hwmodel.arch.ert`)::

    ert: shared_glb                          # one component for every operand
    ert:
      read:  {W: weights_NoC, I: ifmap_NoC, O: psum_read_NoC}   # or one name
      write: {W: weights_NoC, I: ifmap_NoC, O: psum_write_NoC}  # optional (= read)
      read_action: read                       # optional (default: see ert.py)
      write_action: write                     # optional
      words_per_action: 4                     # optional (default 1): words moved by
                                              #   one action (e.g. a 64-bit access of
                                              #   16-bit words = 4)

When an ERT is supplied (``ert_file`` or ``load_arch(..., ert=...)``), ERT energies
replace the file's energies for every level (and the MAC) that names a component;
such levels may then omit ``energy``.  Without an ERT the ``ert`` keys are unused.

Errors are :class:`~hwmodel.ArchitectureError` (a ``ValueError``) whose message
starts ``FILE:LINE:`` and ends with ``valid: ...``.
"""

from __future__ import annotations

import math
import os
import re

import yaml

from hwmodel.arch import ert as _ert
from hwmodel.arch import yaml_nodes as yn
from hwmodel.arch.architecture import (
    Architecture,
    ArchitectureError,
    AreaModel,
    MemoryLevel,
    architecture_problems,
    as_leaf,
    format_path,
)
from hwmodel.arch.kinds import COMPRESSION_MODES, LEVEL_KINDS, OPERANDS, SPARSITY_MODES, level_kind

__all__ = ["parse_arch_yaml"]

INF = math.inf

TOP_REQUIRED = ("name", "energy_unit", "pe_array", "clock", "word_bits", "mac_energy",
                "nonmac_energy", "area", "levels")
TOP_OPTIONAL = ("description", "pj_per_unit", "sparsity", "compression", "rle_run_bits",
                "ert_file", "mac_ert")
LEVEL_KEYS = ("name", "kind", "holds", "per_pe", "size", "bandwidth", "energy", "read_energy",
              "write_energy", "area_mm2_per_kb", "area_mm2_per_word_per_cycle", "ert")
AREA_KEYS = ("pe_mm2", "fixed_mm2")
ENERGY_UNITS = ("pJ", "MAC")

SIZE_UNITS = {"b": 1, "bit": 1, "bits": 1, "B": 8, "byte": 8, "bytes": 8,
              "KB": 8 * 1024, "KiB": 8 * 1024, "MB": 8 * 1024**2, "MiB": 8 * 1024**2,
              "GB": 8 * 1024**3, "GiB": 8 * 1024**3}
CLOCK_UNITS = {"Hz": 1.0, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9}
RATE_UNITS = {"GB/s": 1e9, "MB/s": 1e6, "kB/s": 1e3, "GiB/s": 1024.0**3, "MiB/s": 1024.0**2}
_VALID_SIZE = ("a size with a unit: 'N b', 'N B', 'N KB' (=KiB, 1024 B), 'N MB' (=MiB), "
               "'N GB' (=GiB), or 'N x B b' (N words of B bits)")
_VALID_BW = ("a number of words per cycle, 'N words/cycle', 'N bits/cycle', 'N B/cycle', "
             "'N GB/s', 'N MB/s', 'N GiB/s', 'N MiB/s', or 'unlimited'")


def _split_unit(ctx, node, where, valid) -> tuple[float, str]:
    node = yn.scalar(ctx, node, where, valid)
    if node.tag in (yn.TAG + "int", yn.TAG + "float"):
        raise ctx.err(node, f"{where} {node.value!r} has no unit", valid)
    m = re.fullmatch(rf"\s*({yn.NUMBER})\s*([A-Za-z/]+)\s*", node.value)
    if not m:
        raise ctx.err(node, f"{where}: cannot read {node.value!r}", valid)
    return float(m.group(1)), m.group(2)


def _size_bits(ctx, node, where) -> float:
    node = yn.scalar(ctx, node, where, _VALID_SIZE)
    if node.tag == yn.TAG + "str":
        m = re.fullmatch(rf"\s*({yn.NUMBER})\s*[xX*]\s*({yn.NUMBER})\s*(\S+)\s*", node.value)
        if m:
            if m.group(3) not in ("b", "bit", "bits"):
                raise ctx.err(node, f"{where}: bad unit {m.group(3)!r} in {node.value!r} "
                              "(the word width after 'x' is in bits)", "'N x B b', e.g. '224 x 16 b'")
            return float(m.group(1)) * float(m.group(2))
    v, unit = _split_unit(ctx, node, where, _VALID_SIZE)
    if unit not in SIZE_UNITS:
        raise ctx.err(node, f"{where}: bad size unit {unit!r} in {node.value!r}",
                      f"units {list(SIZE_UNITS)} (KB = KiB = 1024 B), or 'N x B b'")
    return v * SIZE_UNITS[unit]


def _clock_hz(ctx, node, where) -> float:
    valid = "a frequency with a unit, e.g. '200 MHz' (units Hz, kHz, MHz, GHz)"
    v, unit = _split_unit(ctx, node, where, valid)
    if unit not in CLOCK_UNITS:
        raise ctx.err(node, f"{where}: bad frequency unit {unit!r}", valid)
    return v * CLOCK_UNITS[unit]


def _bandwidth(ctx, node, where, word_bits: float, clock_hz: float) -> float:
    node = yn.scalar(ctx, node, where, _VALID_BW)
    if node.tag in (yn.TAG + "int", yn.TAG + "float"):
        return yn.number(ctx, node, where)
    if node.tag == yn.TAG + "str" and node.value.strip() == "unlimited":
        return INF
    if node.tag == yn.TAG + "str" and re.fullmatch(yn.NUMBER, node.value.strip()):
        return float(node.value)
    if node.tag != yn.TAG + "str":
        raise ctx.err(node, f"{where} must be a bandwidth, got {yn.kind_of(node)}", _VALID_BW)
    m = re.fullmatch(rf"\s*({yn.NUMBER})\s*(\S+)\s*", node.value)
    if not m:
        raise ctx.err(node, f"{where}: cannot read {node.value!r}", _VALID_BW)
    v, unit = float(m.group(1)), m.group(2)
    if unit in ("words/cycle", "word/cycle"):
        return v
    if unit in ("bits/cycle", "b/cycle"):
        return v / word_bits
    if unit in ("B/cycle", "bytes/cycle"):
        return v * 8 / word_bits
    if unit in RATE_UNITS:
        return v * RATE_UNITS[unit] * 8 / clock_hz / word_bits
    raise ctx.err(node, f"{where}: bad bandwidth unit {unit!r}", _VALID_BW)


def _per_operand(ctx, node, where, conv, allowed, *, what) -> tuple[dict[str, float], dict]:
    """A scalar (applied to every allowed operand) or {W:, I:, O:} with exactly the
    allowed operands.  Returns ({op: value}, {op: node})."""
    if isinstance(node, yaml.MappingNode):
        m = yn.mapping(ctx, node, where, allowed, required=allowed)
        return ({x: conv(ctx, m[x], f"{where}.{x}") for x in allowed}, dict(m))
    v = conv(ctx, node, where)
    return ({x: v for x in allowed}, {})


# ----------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------


def parse_arch_yaml(text: str, file: str = "<string>", *, ert=None, base_dir: str | None = None) -> Architecture:
    """Parse architecture YAML text strictly and validate it.

    Args:
      text: the YAML document.
      file: name used in error messages (and for resolving ``ert_file``).
      ert: an Accelergy ERT (path, YAML text wrapped in :class:`hwmodel.arch.ert.ERT`,
        or a parsed ``ERT``) overriding the file's ``ert_file``; None to use it.
      base_dir: directory for relative ``ert_file`` paths (default: the file's).

    Returns:
      A validated :class:`Architecture` (float32 leaves).

    Raises:
      ArchitectureError: with ``file:line: what; valid: ...``.
    """
    ctx = yn.Context(file)
    root, top = _document(ctx, text, file)
    name = yn.text(ctx, top["name"], "name")
    description = yn.text(ctx, top["description"], "description") if "description" in top else ""
    scale = _energy_scale(ctx, top)
    pe = yn.mapping(ctx, top["pe_array"], "pe_array", ("rows", "cols"), ("rows", "cols"))
    ctx.nodes[("pe_array", "rows")] = pe["rows"]
    ctx.nodes[("pe_array", "cols")] = pe["cols"]
    rows = yn.integer(ctx, pe["rows"], "pe_array.rows", "an integer >= 1")
    cols = yn.integer(ctx, pe["cols"], "pe_array.cols", "an integer >= 1")
    clock = _clock_hz(ctx, top["clock"], "clock")
    wbits, wnodes = _per_operand(ctx, top["word_bits"], "word_bits",
                                 lambda c, n, w: float(yn.integer(c, n, w, "an integer number of bits")),
                                 OPERANDS, what="word_bits")
    for x, n in wnodes.items():
        ctx.nodes[("word_bits", x)] = n
    mac = yn.number(ctx, top["mac_energy"], "mac_energy") * scale
    nonmac = yn.number(ctx, top["nonmac_energy"], "nonmac_energy") * scale
    sparsity = yn.choice(ctx, top["sparsity"], "sparsity", SPARSITY_MODES) if "sparsity" in top else "none"
    compression = (yn.choice(ctx, top["compression"], "compression", COMPRESSION_MODES)
                   if "compression" in top else "none")
    rle_bits = yn.integer(ctx, top["rle_run_bits"], "rle_run_bits", "an integer >= 1") if "rle_run_bits" in top else 4

    area = yn.mapping(ctx, top["area"], "area", AREA_KEYS, AREA_KEYS)
    for k, v in area.items():
        ctx.nodes[("area", k)] = v
    pe_mm2 = yn.number(ctx, area["pe_mm2"], "area.pe_mm2")
    fixed_mm2 = yn.number(ctx, area["fixed_mm2"], "area.fixed_mm2")

    table = _ert_table(ctx, top, ert, base_dir, file)
    levels, kb_coef, bw_coef, ert_used = _levels(ctx, top, scale=scale, wbits=wbits, clock=clock, table=table)
    if "mac_ert" in top:
        mspec = _ert.parse_mac_spec(ctx, top["mac_ert"])
        if table is not None:
            mac = _ert.mac_energy(ctx, table, mspec, top["mac_ert"])
            ctx.nodes[("mac_energy",)] = top["mac_ert"]
            ert_used = True
    if table is not None and not ert_used:
        raise ctx.err(root, f"an ERT was given ({table.file}) but no level has an 'ert' key and there is no 'mac_ert'",
                      f"name ERT components in the levels, e.g. ert: {table.short_names()[:3]}")

    arch = Architecture(
        name=name, levels=tuple(levels),
        pe_rows=as_leaf(rows), pe_cols=as_leaf(cols), clock_hz=as_leaf(clock),
        word_bits=as_leaf([wbits[x] for x in OPERANDS]),
        mac_energy_pj=as_leaf(mac), nonmac_energy_pj=as_leaf(nonmac),
        area=AreaModel(pe_mm2=as_leaf(pe_mm2), sram_mm2_per_kb=as_leaf(kb_coef), fixed_mm2=as_leaf(fixed_mm2),
                       bandwidth_mm2=as_leaf(bw_coef)),
        sparsity=sparsity, compression=compression, rle_run_bits=rle_bits, description=description,
    )
    _raise_problems(ctx, arch, file)
    return arch


def _document(ctx, text: str, file: str):
    """The YAML document's root node and its top-level keys (strict: one mapping)."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else "?"
        raise ArchitectureError(f"{file}:{line}: not valid YAML: {getattr(e, 'problem', e)}; "
                                "valid: a YAML mapping (see hwmodel/arch/yaml_read.py for the format)", file=file) from None
    if len(nodes) != 1 or nodes[0] is None:
        raise ArchitectureError(f"{file}:1: expected exactly one YAML document, found {len(nodes)}; "
                                "valid: one mapping with keys " + str(list(TOP_REQUIRED + TOP_OPTIONAL)), file=file)
    root = nodes[0]
    ctx.nodes[()] = root
    top = yn.mapping(ctx, root, "architecture", TOP_REQUIRED + TOP_OPTIONAL, TOP_REQUIRED)
    for k, v in top.items():
        ctx.nodes[(k,)] = v
    return root, top


def _energy_scale(ctx, top) -> float:
    """pJ per energy unit of the file (``energy_unit`` / ``pj_per_unit``)."""
    unit = yn.choice(ctx, top["energy_unit"], "energy_unit", ENERGY_UNITS)
    if unit == "MAC":
        if "pj_per_unit" not in top:
            raise ctx.err(top["energy_unit"], "energy_unit is MAC but pj_per_unit is missing",
                          "add 'pj_per_unit: <pJ per MAC-relative unit>'")
        scale = yn.number(ctx, top["pj_per_unit"], "pj_per_unit")
        if not (scale > 0 and math.isfinite(scale)):
            raise ctx.err(top["pj_per_unit"], f"pj_per_unit is {scale:g}", "a positive number of pJ")
    else:
        if "pj_per_unit" in top:
            raise ctx.err(top["pj_per_unit"], "pj_per_unit is only meaningful with energy_unit: MAC",
                          "remove pj_per_unit, or set energy_unit: MAC")
        scale = 1.0
    return scale


def _ert_table(ctx, top, ert, base_dir, file):
    """The Accelergy ERT to take energies from: ``ert`` if given, else the file's
    ``ert_file`` (relative to ``base_dir`` or the file's directory), else None."""
    table = None
    if ert is not None:
        table = _ert.as_ert(ert)
    elif "ert_file" in top:
        rel = yn.text(ctx, top["ert_file"], "ert_file")
        bdir = base_dir if base_dir is not None else os.path.dirname(os.path.abspath(file))
        path = rel if os.path.isabs(rel) else os.path.join(bdir, rel)
        if not os.path.isfile(path):
            raise ctx.err(top["ert_file"], f"ert_file {rel!r} not found (looked at {path})",
                          "a path to an Accelergy ERT.yaml, relative to this file")
        table = _ert.load_ert(path)
    return table


def _levels(ctx, top, *, scale: float, wbits: dict, clock: float, table):
    """Every level of ``levels`` (outermost first): ``(levels, area per KB, area per
    word/cycle of bandwidth, whether an ERT energy was used)``."""
    lv_node = top["levels"]
    if not isinstance(lv_node, yaml.SequenceNode) or not lv_node.value:
        raise ctx.err(lv_node, f"levels must be a non-empty list, got {yn.kind_of(lv_node)}",
                      "a list of level mappings, outermost first (DRAM, GLB, NoC, RF)")
    levels, kb_coef, bw_coef = [], [], []
    ert_used = False
    names_so_far: dict[str, int] = {}
    for i, node in enumerate(lv_node.value):
        level, coef, bw_area, used = _level(ctx, i, node, names_so_far, scale=scale, wbits=wbits,
                                            clock=clock, table=table)
        levels.append(level)
        kb_coef.append(coef)
        bw_coef.append(bw_area)
        ert_used = ert_used or used
    return levels, kb_coef, bw_coef, ert_used


def _level(ctx, i: int, node, names_so_far: dict, *, scale: float, wbits: dict, clock: float, table):
    """One level: ``(MemoryLevel, area mm^2 per KB, area mm^2 per word/cycle of
    bandwidth, whether an ERT energy was used)``."""
    L = ("levels", i)
    ctx.nodes[L] = node
    m = yn.mapping(ctx, node, f"levels[{i}]", LEVEL_KEYS, ("name", "kind"))
    for k, v in m.items():
        ctx.nodes[L + (k,)] = v
    lname = yn.text(ctx, m["name"], f"levels[{i}].name")
    if lname in names_so_far:
        raise ctx.err(m["name"], f"levels[{i}].name: level name {lname!r} is used twice "
                      f"(also levels[{names_so_far[lname]}])",
                      f"a name not used by another level; used: {list(names_so_far)}")
    names_so_far[lname] = i
    W = f"levels[{i}] ({lname})"
    kind = yn.choice(ctx, m["kind"], f"{W}.kind", LEVEL_KINDS)
    props = level_kind(kind)
    per_pe = yn.boolean(ctx, m["per_pe"], f"{W}.per_pe") if "per_pe" in m else False
    holds = _level_holds(ctx, m, node, W, kind, props)
    ops_e = holds if props.holds_data else OPERANDS  # operands that have energies here

    cap, shared = _level_size(ctx, m, node, L, W, kind, props, holds)
    bw = _level_bandwidth(ctx, m, node, W, kind, props, ops_e, wbits, clock)
    coef = _level_area(ctx, m, node, W, kind, props)
    key = "area_mm2_per_word_per_cycle"  # checked with the rest by validate_architecture
    bw_area = yn.number(ctx, m[key], f"{W}.{key}") if key in m else 0.0
    rd, wr, ert_used = _level_energies(ctx, m, node, L, W, ops_e, scale, table)
    level = MemoryLevel(
        name=lname, kind=kind, holds=holds, per_pe=per_pe,
        capacity_bits=as_leaf([cap[x] for x in OPERANDS]),
        shared_bits=as_leaf(shared),
        read_energy_pj=as_leaf([rd[x] for x in OPERANDS]),
        write_energy_pj=as_leaf([wr[x] for x in OPERANDS]),
        bandwidth_words=as_leaf(bw),
    )
    return level, coef, bw_area, ert_used


def _level_holds(ctx, m, node, W: str, kind: str, props) -> tuple[str, ...]:
    """The operands a level stores, in canonical W, I, O order (none for a kind that
    holds no data)."""
    if not props.holds_data:
        if "holds" in m:
            hn = m["holds"]
            if not (isinstance(hn, yaml.SequenceNode) and not hn.value):
                raise ctx.err(hn, f"{W}: a {kind} level stores nothing, it cannot hold operands",
                              f"remove 'holds' (a {kind} charges per word delivered to a PE)")
        holds: tuple[str, ...] = ()
    else:
        if "holds" not in m:
            raise ctx.err(node, f"{W}: missing required key 'holds'",
                          f"holds: a list from {list(OPERANDS)}, e.g. [W, I, O]")
        hn = m["holds"]
        if not isinstance(hn, yaml.SequenceNode):
            raise ctx.err(hn, f"{W}.holds must be a list, got {yn.kind_of(hn)}", f"a list from {list(OPERANDS)}, e.g. [I, O]")
        hl = []
        for e in hn.value:
            x = yn.choice(ctx, e, f"{W}.holds", OPERANDS)
            if x in hl:
                raise ctx.err(e, f"{W}.holds lists {x!r} twice", f"each of {list(OPERANDS)} at most once")
            hl.append(x)
        if not hl:
            raise ctx.err(hn, f"{W}.holds is empty", f"a non-empty list from {list(OPERANDS)}, or remove the level")
        holds = tuple(x for x in OPERANDS if x in hl)  # canonical W, I, O order
    return holds


def _level_size(ctx, m, node, L: tuple, W: str, kind: str, props, holds) -> tuple[dict, float]:
    """Per-operand partitions (bits, ``inf`` if none) and the shared size (bits)."""
    cap = {x: INF for x in OPERANDS}
    shared = INF
    if not props.holds_data:
        if "size" in m:
            raise ctx.err(m["size"], f"{W}: a {kind} level has no size", "remove 'size'")
    elif "size" not in m:
        if props.needs_size:
            raise ctx.err(node, f"{W}: missing required key 'size'", _VALID_SIZE)
    else:
        sn = m["size"]
        if isinstance(sn, yaml.MappingNode):
            sm = yn.mapping(ctx, sn, f"{W}.size", holds + ("total",))
            for k, v in sm.items():
                ctx.nodes[L + ("size",) + ((k,) if k != "total" else ())] = v
            for x in holds:
                if x in sm:
                    cap[x] = _size_bits(ctx, sm[x], f"{W}.size.{x}")
            if "total" in sm:
                shared = _size_bits(ctx, sm["total"], f"{W}.size.total")
            else:
                miss = [x for x in holds if x not in sm]
                if miss:
                    raise ctx.err(sn, f"{W}.size has no partition for {miss} and no total",
                                  f"a size for each held operand {list(holds)}, or a 'total' shared by the rest")
        elif not props.needs_size and isinstance(sn, yaml.ScalarNode) and sn.value.strip() == "unlimited":
            shared = INF
        else:
            shared = _size_bits(ctx, sn, f"{W}.size")
    return cap, shared


def _level_bandwidth(ctx, m, node, W: str, kind: str, props, ops_e, wbits: dict, clock: float) -> float:
    """Words per cycle (``inf``: unlimited), bit and byte rates in words of the widest
    operand the level moves."""
    widest = max(wbits[x] for x in (ops_e or OPERANDS))
    if "bandwidth" in m:
        bw = _bandwidth(ctx, m["bandwidth"], f"{W}.bandwidth", widest, clock)
    elif props.needs_bandwidth:
        raise ctx.err(node, f"{W}: missing required key 'bandwidth' ({kind.upper()} bandwidth bounds latency)",
                      _VALID_BW)
    else:
        bw = INF
    return bw


def _level_area(ctx, m, node, W: str, kind: str, props) -> float:
    """mm^2 per KB of the level's storage."""
    if "area_mm2_per_kb" in m:
        coef = yn.number(ctx, m["area_mm2_per_kb"], f"{W}.area_mm2_per_kb")
        if not props.has_area and coef != 0:
            raise ctx.err(m["area_mm2_per_kb"], f"{W}: a {kind} level has no on-chip storage area",
                          "0, or remove area_mm2_per_kb (put NoC area in area.fixed_mm2)")
    elif props.has_area:
        raise ctx.err(node, f"{W}: missing required key 'area_mm2_per_kb'",
                      "mm^2 per KB of this level's storage (a number >= 0)")
    else:
        coef = 0.0
    return coef


def _level_energies(ctx, m, node, L: tuple, W: str, ops_e, scale: float, table):
    """``(read pJ, write pJ, whether an ERT energy was used)`` per operand: from
    ``energy`` or ``read_energy`` / ``write_energy``, replaced by the ERT's where the
    level names a component and an ERT is given."""
    ert_used = False
    rd = {x: 0.0 for x in OPERANDS}
    wr = {x: 0.0 for x in OPERANDS}
    have_yaml_energy = False
    if "energy" in m:
        for k in ("read_energy", "write_energy"):
            if k in m:
                raise ctx.err(m[k], f"{W}: both 'energy' and {k!r} given",
                              "either 'energy' (read = write) or 'read_energy' and 'write_energy'")
        e, en = _per_operand(ctx, m["energy"], f"{W}.energy", yn.number, ops_e, what="energy")
        rd.update({x: v * scale for x, v in e.items()})
        wr.update({x: v * scale for x, v in e.items()})
        for k in ("read_energy", "write_energy"):
            ctx.nodes[L + (k,)] = m["energy"]
            for x, n in en.items():
                ctx.nodes[L + (k, x)] = n
        have_yaml_energy = True
    elif "read_energy" in m or "write_energy" in m:
        for k in ("read_energy", "write_energy"):
            if k not in m:
                other = "read_energy" if k == "write_energy" else "write_energy"
                raise ctx.err(m[other], f"{W}: {other!r} given without {k!r}",
                              f"both read_energy and write_energy, or one 'energy'")
        for k, dst in (("read_energy", rd), ("write_energy", wr)):
            e, en = _per_operand(ctx, m[k], f"{W}.{k}", yn.number, ops_e, what=k)
            dst.update({x: v * scale for x, v in e.items()})
            for x, n in en.items():
                ctx.nodes[L + (k, x)] = n
        have_yaml_energy = True

    if "ert" in m:
        spec = _ert.parse_level_spec(ctx, m["ert"], W, ops_e)
        if table is not None:
            r_e, w_e = _ert.level_energies(ctx, table, spec, m["ert"], W)
            rd.update(r_e)
            wr.update(w_e)
            for k in ("read_energy", "write_energy"):
                ctx.nodes[L + (k,)] = m["ert"]
                for x in OPERANDS:
                    ctx.nodes.pop(L + (k, x), None)
            ert_used = True
            have_yaml_energy = True
    if not have_yaml_energy:
        raise ctx.err(node, f"{W}: no energy given",
                      "'energy' (or 'read_energy' + 'write_energy'), or an 'ert' component "
                      "together with an ERT file")
    return rd, wr, ert_used


def _raise_problems(ctx, arch: Architecture, file: str) -> None:
    """Raise one ArchitectureError listing every problem of ``arch`` with its line."""
    problems = architecture_problems(arch)
    if problems:
        names = [l.name for l in arch.levels]
        msgs = []
        for p in problems:
            node = ctx.node_for(p.path)
            line = node.start_mark.line + 1 if node is not None else "?"
            msgs.append(f"{file}:{line}: {format_path(names, p.path)}: {p.message}; valid: {p.valid}")
        raise ArchitectureError("\n".join(msgs), problems, file=file)

