"""Test fixtures: architectures built directly from the dataclasses, random mappings.

These stand in for the ``arch`` branch's presets inside the tests only.  The
Eyeriss-like numbers follow DESIGN.md section 3 (normalized energies DRAM 200, GLB 6,
NoC 2, RF 1, MAC 1; 12 x 14 PEs; RF 224 / 12 / 24 words of 16 b; 108 KB GLB).
"""

from __future__ import annotations

import dataclasses
import math
import random

import jax.numpy as jnp

import numpy as np

from hwmodel import DIMS, OPERANDS, Architecture, AreaModel, LayerSpec, MemoryLevel, Workload
from hwmodel.arch.architecture import as_leaf
from hwmodel.mapping.loopnest import Mapping, arch_structure, stack_mappings
from hwmodel.mapping.tiles import uncovered

INF = float("inf")


def level(name, kind, holds, per_pe=False, cap=(INF, INF, INF), shared=INF,
          read=(1.0, 1.0, 1.0), write=None, bw=INF):
    """A MemoryLevel from plain numbers (energies pJ per word, capacities in bits)."""
    write = read if write is None else write
    return MemoryLevel(
        name=name, kind=kind, holds=tuple(holds), per_pe=per_pe,
        capacity_bits=as_leaf(cap), shared_bits=as_leaf(shared),
        read_energy_pj=as_leaf(read), write_energy_pj=as_leaf(write),
        bandwidth_words=as_leaf(bw),
    )


def make_arch(levels, rows=12, cols=14, *, name="test", word_bits=16, mac=1.0,
              nonmac=0.5, clock=200e6, sparsity="none", compression="none",
              pe_mm2=0.01, sram_mm2_per_kb=None, fixed_mm2=1.0):
    n = len(levels)
    if sram_mm2_per_kb is None:
        sram_mm2_per_kb = [0.0 if l.kind in ("dram", "noc") else 0.05 for l in levels]
    return Architecture(
        name=name, levels=tuple(levels), pe_rows=as_leaf(rows), pe_cols=as_leaf(cols),
        clock_hz=as_leaf(clock), word_bits=as_leaf([word_bits] * 3),
        mac_energy_pj=as_leaf(mac), nonmac_energy_pj=as_leaf(nonmac),
        area=AreaModel(pe_mm2=as_leaf(pe_mm2), sram_mm2_per_kb=as_leaf(sram_mm2_per_kb),
                       fixed_mm2=as_leaf(fixed_mm2)),
        sparsity=sparsity, compression=compression,
    )
    del n


def eyeriss(*, glb_holds=("I", "O"), noc=True, sparsity="none", compression="none",
            rows=12, cols=14, dram_bw=INF, glb_bw=INF):
    """Eyeriss-like (65 nm, normalized energies, 1 unit = 1 pJ here)."""
    lv = [
        level("DRAM", "dram", "WIO", read=(200.0,) * 3, bw=dram_bw),
        level("GLB", "sram", glb_holds, shared=108 * 1024 * 8, read=(6.0,) * 3, bw=glb_bw),
    ]
    if noc:
        lv.append(level("NoC", "noc", (), read=(2.0,) * 3))
    lv.append(level("RF", "rf", "WIO", per_pe=True, cap=(224 * 16, 12 * 16, 24 * 16),
                    read=(1.0,) * 3))
    return make_arch(lv, rows, cols, name="eyeriss-test", sparsity=sparsity,
                     compression=compression)


def deep(rows=4, cols=4):
    """Five levels: DRAM, L2 (W, I), NoC, RF (W, O per PE), REG (I per PE)."""
    lv = [
        level("DRAM", "dram", "WIO", read=(100.0, 110.0, 120.0), write=(130.0, 140.0, 150.0)),
        level("L2", "sram", "WI", shared=64 * 1024 * 8, read=(5.0, 6.0, 7.0)),
        level("NoC", "noc", (), read=(2.0, 2.5, 3.0), write=(2.2, 2.7, 3.2)),
        level("RF", "rf", "WO", per_pe=True, cap=(64 * 16, INF, 16 * 16), read=(1.0, 1.1, 1.2)),
        level("REG", "rf", "I", per_pe=True, cap=(INF, 8 * 16, INF), read=(0.5, 0.6, 0.7)),
    ]
    return make_arch(lv, rows, cols, name="deep-test")


def flat(rows=4, cols=4):
    """No per-PE storage: DRAM, GLB, NoC; MACs fed straight from the GLB."""
    lv = [
        level("DRAM", "dram", "WIO", read=(200.0,) * 3),
        level("GLB", "sram", "WIO", shared=32 * 1024 * 8, read=(6.0,) * 3),
        level("NoC", "noc", (), read=(2.0,) * 3),
    ]
    return make_arch(lv, rows, cols, name="flat-test")


def noc_high(rows=4, cols=4):
    """A NoC between DRAM and GLB (not at the array), plus RF per PE."""
    lv = [
        level("DRAM", "dram", "WIO", read=(200.0,) * 3),
        level("BUS", "noc", (), read=(3.0,) * 3),
        level("GLB", "sram", "WIO", shared=32 * 1024 * 8, read=(6.0,) * 3),
        level("RF", "rf", "WIO", per_pe=True, cap=(64 * 16, 32 * 16, 32 * 16)),
    ]
    return make_arch(lv, rows, cols, name="nochigh-test")


ALL_TEST_ARCHS = {"eyeriss": eyeriss, "eyeriss_wglb": lambda: eyeriss(glb_holds="WIO"),
                  "deep": deep, "flat": flat, "noc_high": noc_high}


# ----------------------------------------------------------------------------------
# random mappings
# ----------------------------------------------------------------------------------
def _split(n: int, k: int, rng: random.Random) -> list[int]:
    """Random ordered factorization of n into k factors."""
    out = [1] * k
    rem = n
    primes = []
    x = rem
    p = 2
    while x > 1:
        while x % p == 0:
            primes.append(p)
            x //= p
        p += 1
    for pr in primes:
        out[rng.randrange(k)] *= pr
    return out


def random_mapping(layer: LayerSpec, arch: Architecture, rng: random.Random, *,
                   keep_prob=0.7, spatial_prob=0.5) -> Mapping:
    """A random mapping with perfect factorization (capacities ignored).

    Spatial factors respect the array size; keep is a random subset of holds.  Draws
    again while the mapping falls outside the closed form's domain
    (:func:`hwmodel.mapping.tiles.uncovered`, only possible with two per-PE levels).
    """
    st = arch_structure(arch)
    while True:
        m = _random_mapping(layer, arch, rng, keep_prob, spatial_prob, st)
        if not uncovered(stack_mappings([m]), st)[0]:
            return m


def _random_mapping(layer, arch, rng, keep_prob, spatial_prob, st):
    n_s = st.n_storage
    rows, cols = int(np.asarray(arch.pe_rows)), int(np.asarray(arch.pe_cols))
    temporal = [[1] * 8 for _ in range(n_s)]
    sx, sy = [1] * 8, [1] * 8
    for i, d in enumerate(DIMS):
        b = getattr(layer, d)
        parts = _split(b, n_s + 2, rng)
        # spatial parts only if they fit
        for slot, (arr, lim) in enumerate(((sx, cols), (sy, rows))):
            f = parts[n_s + slot]
            if f > 1 and (rng.random() < spatial_prob) and math.prod(arr) * f <= lim:
                arr[i] = f
            else:
                parts[rng.randrange(n_s)] *= f
        for j in range(n_s):
            temporal[j][i] = parts[j]
    order = []
    for _ in range(n_s):
        o = list(DIMS)
        rng.shuffle(o)
        order.append(tuple(o))
    keep = []
    for j in range(n_s):
        if j == 0:
            keep.append(OPERANDS)
        else:
            keep.append(tuple(x for x, h in zip(OPERANDS, st.holds[j])
                              if h and rng.random() < keep_prob))
    return Mapping(levels=st.storage_names, temporal=tuple(map(tuple, temporal)),
                   order=tuple(order), spatial_x=tuple(sx), spatial_y=tuple(sy),
                   keep=tuple(keep))


def sized(arch, glb_kb, rf_scale, rows, cols):
    """A copy of an Eyeriss-like arch with GLB KB, RF capacity scale and array size changed."""
    lv = []
    for l in arch.levels:
        if l.name == "GLB":
            l = dataclasses.replace(l, shared_bits=jnp.asarray(glb_kb * 8192.0, jnp.float32))
        if l.name == "RF":
            l = dataclasses.replace(l, capacity_bits=l.capacity_bits * rf_scale)
        lv.append(l)
    return arch.replace(levels=tuple(lv), pe_rows=jnp.asarray(rows, jnp.float32),
                        pe_cols=jnp.asarray(cols, jnp.float32))




# A tiny mixed workload for the cost tests: conv, strided conv with non-MAC ops,
# depthwise, dense, attention Q K^T.
TINY_LAYERS = (
    LayerSpec(name="conv", kind="conv", M=16, C=8, P=6, Q=6, R=3, S=3, H=8, W=8),
    LayerSpec(name="strided", kind="conv", M=8, C=4, P=5, Q=5, R=3, S=3, stride=(2, 2),
              H=11, W=11, nonmac_ops=200),
    LayerSpec(name="dw", kind="conv", G=8, M=1, C=1, P=6, Q=6, R=3, S=3, H=8, W=8),
    LayerSpec(name="fc", kind="matmul", N=2, M=24, C=32),
    LayerSpec(name="qk", kind="matmul", G=4, N=8, M=8, C=4, dynamic=True, nonmac_ops=256),
)
TINY = Workload(layers=TINY_LAYERS, name="tiny", batch=1)
