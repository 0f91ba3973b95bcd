"""Speed of the cost model (hwmodel.cost, the mapper), with baselines measured in the same run.

Run::

    python benchmarks/cost_model.py            # full (resnet50 on eyeriss, 10,000 archs)
    python benchmarks/cost_model.py --quick    # smaller vmap, fewer repeats

Prints one table: each row a measurement, its baseline (measured here, same machine,
same run) and the speed-up ratio, and the target from the issue.

Rows:
  1. ``cost`` of resnet50 on eyeriss (rs, fixed mappings) after ``jax.jit``
     (target <= 1 ms); baseline: the same call with ``jax.disable_jit()`` (op by op).
  2. its gradient w.r.t. every layer's weight and activation density (eyeriss with
     ``sparsity="gate"``; target <= 3 ms); baseline: the same gradient with
     ``jax.disable_jit()``; and the forward pass alone for scale.
  3. mapping all of resnet50 (``map_workload``, rs; target <= 5 s); baseline: the
     same candidates evaluated one per Python call (timed on a sample, scaled to the
     candidate count).
  4. ``vmap`` over N architectures (energies, bandwidths, clock varied; fixed
     mappings) in one call; baseline: a Python loop over the jitted single-arch cost
     (timed on a sample, scaled to N).
  5. ``vmap`` over N architectures whose *sizes* vary (GLB, RF, PE rows / cols) with
     the traceable candidate path (``mapping_candidates`` + ``cost(candidates=)``);
     baseline: the same per-arch loop.
  6. the brute-force simulator on one small conv layer vs the analytic counts
     (numpy) for the same layer and mapping.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import hwmodel  # noqa: E402
from hwmodel.costmodel.mapper import candidate_mappings, evaluate_stack, layer_key  # noqa: E402
from hwmodel.mapping.loopnest import stack_mappings  # noqa: E402


def timeit(fn, *, repeat=20, warmup=2):
    """Median wall time of ``fn()`` in seconds (results blocked until ready)."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def fmt(t: float) -> str:
    if t < 1e-3:
        return f"{t * 1e6:.1f} us"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def varied_archs(arch, n, seed=0):
    """n architectures stacked along a leading axis: energies, bandwidths, clock varied."""
    rng = np.random.default_rng(seed)

    def scale(x):
        x = np.asarray(x)
        s = rng.uniform(0.5, 2.0, size=(n,) + (1,) * x.ndim).astype(np.float32)
        out = np.where(np.isfinite(x), x * s, x)
        return jnp.asarray(out, jnp.float32)

    levels = []
    for l in arch.levels:
        levels.append(l.__class__(
            name=l.name, kind=l.kind, holds=l.holds, per_pe=l.per_pe,
            capacity_bits=jnp.broadcast_to(l.capacity_bits, (n, 3)),
            shared_bits=jnp.broadcast_to(l.shared_bits, (n,)),
            read_energy_pj=scale(l.read_energy_pj), write_energy_pj=scale(l.write_energy_pj),
            bandwidth_words=scale(l.bandwidth_words)))
    b = lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x))  # noqa: E731
    return arch.replace(
        levels=tuple(levels), pe_rows=b(arch.pe_rows), pe_cols=b(arch.pe_cols),
        clock_hz=scale(arch.clock_hz), word_bits=b(arch.word_bits),
        mac_energy_pj=scale(arch.mac_energy_pj), nonmac_energy_pj=b(arch.nonmac_energy_pj),
        area=jax.tree_util.tree_map(b, arch.area))


def sized_archs(arch, n, seed=1):
    """n architectures with GLB 16-256 KB, RF partitions x0.5-2, 6-16 x 7-16 PEs."""
    rng = np.random.default_rng(seed)
    glb_kb = rng.uniform(16, 256, n)
    rf_s = rng.uniform(0.5, 2.0, n)
    rows = rng.integers(6, 17, n).astype(np.float32)
    cols = rng.integers(7, 17, n).astype(np.float32)
    levels = []
    for l in arch.levels:
        cap = jnp.broadcast_to(l.capacity_bits, (n, 3))
        shared = jnp.broadcast_to(l.shared_bits, (n,))
        if l.name == "GLB":
            shared = jnp.asarray(glb_kb * 8192.0, jnp.float32)
        if l.per_pe:
            cap = jnp.asarray(np.floor(np.asarray(l.capacity_bits)[None, :] * rf_s[:, None]
                                       / 16.0) * 16.0, jnp.float32)
        levels.append(l.__class__(
            name=l.name, kind=l.kind, holds=l.holds, per_pe=l.per_pe, capacity_bits=cap,
            shared_bits=shared,
            read_energy_pj=jnp.broadcast_to(l.read_energy_pj, (n, 3)),
            write_energy_pj=jnp.broadcast_to(l.write_energy_pj, (n, 3)),
            bandwidth_words=jnp.broadcast_to(l.bandwidth_words, (n,))))
    b = lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x))  # noqa: E731
    return arch.replace(
        levels=tuple(levels), pe_rows=jnp.asarray(rows), pe_cols=jnp.asarray(cols),
        clock_hz=b(arch.clock_hz), word_bits=b(arch.word_bits),
        mac_energy_pj=b(arch.mac_energy_pj), nonmac_energy_pj=b(arch.nonmac_energy_pj),
        area=jax.tree_util.tree_map(b, arch.area))


def index_arch(stacked, i):
    return jax.tree_util.tree_map(lambda x: x[i], stacked)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats, 1,000 architectures")
    p.add_argument("--archs", type=int, default=None, help="architectures for the vmap rows")
    args = p.parse_args(argv)
    n_arch = args.archs or (1000 if args.quick else 10_000)
    rep = 5 if args.quick else 20

    from models._workload import model_workload

    wl = model_workload("resnet50", batch=1)
    arch = hwmodel.load_arch("eyeriss")
    L = len(wl.layers)
    rows = []

    # 3. mapping (first: its result feeds the others)
    t0 = time.perf_counter()
    maps = hwmodel.map_workload(wl, arch, dataflow="rs")
    t_map = time.perf_counter() - t0
    uniq = {}
    for l in wl.layers:
        uniq.setdefault(layer_key(l), l)
    n_cand, per_cand = 0, []
    for l in uniq.values():
        ms = candidate_mappings(l, arch, "rs")
        n_cand += len(ms)
        sample = np.linspace(0, len(ms) - 1, min(len(ms), 8)).astype(int)
        for i in sample:
            one = ms.take(np.array([i]))
            t = time.perf_counter()
            evaluate_stack(l, arch, one)
            per_cand.append(time.perf_counter() - t)
    t_loop_map = float(np.mean(per_cand)) * n_cand

    # 1. cost after jit
    f = jax.jit(lambda a: hwmodel.cost(wl, a, mappings=maps))
    t_cost = timeit(lambda: f(arch), repeat=rep * 5)
    with jax.disable_jit():
        t_eager = timeit(lambda: hwmodel.cost(wl, arch, mappings=maps), repeat=max(rep // 4, 2),
                         warmup=1)
    rows.append(("cost(resnet50, eyeriss) after jit", t_cost, "same call, jax.disable_jit()",
                 t_eager, "<= 1 ms"))

    # 2. gradient w.r.t. all per-layer densities
    ag = arch.replace(sparsity="gate")
    maps_g = maps

    def loss(dw, da):
        return hwmodel.cost(wl, ag, mappings=maps_g, knobs=hwmodel.Knobs(
            weight_density=dw, act_density=da)).energy_pj

    g = jax.jit(jax.grad(loss, argnums=(0, 1)))
    d0 = jnp.full((L,), 0.5)
    t_grad = timeit(lambda: g(d0, d0), repeat=rep * 5)
    fg = jax.jit(loss)
    t_fwd = timeit(lambda: fg(d0, d0), repeat=rep * 5)
    gl = jax.grad(loss, argnums=(0, 1))
    with jax.disable_jit():
        t_grad_eager = timeit(lambda: gl(d0, d0), repeat=2, warmup=1)
    rows.append((f"grad wrt {2 * L} densities (gate) after jit", t_grad,
                 "same grad, jax.disable_jit()", t_grad_eager, "<= 3 ms"))
    rows.append(("  (its forward pass alone, jit)", t_fwd, "grad (row above)", t_grad, "-"))
    rows.append((f"map_workload(resnet50, rs): {n_cand} cands", t_map,
                 "1 candidate per Python call (scaled)", t_loop_map, "<= 5 s"))

    # 4. vmap over architectures, fixed mappings
    archs = varied_archs(arch, n_arch)
    fv = jax.jit(jax.vmap(lambda a: hwmodel.cost(wl, a, mappings=maps).energy_pj))
    t_vmap = timeit(lambda: fv(archs), repeat=max(rep // 4, 3), warmup=1)
    k = 50
    t_one = timeit(lambda: [f(index_arch(archs, i)).energy_pj for i in range(k)], repeat=2,
                   warmup=1) / k
    rows.append((f"vmap over {n_arch} archs (energies, bw, clock)", t_vmap,
                 f"Python loop of jitted cost (scaled x{n_arch})", t_one * n_arch, "time it"))

    # 5. vmap over sizes with the candidate path
    lo = index_arch(sized_archs(arch, 2, seed=5), 0)
    corners = []
    for kb, s_rf, r, c in ((16, 0.5, 6, 7), (256, 2.0, 16, 16), (108, 1.0, 12, 14)):
        lv = []
        for l in arch.levels:
            if l.name == "GLB":
                l = l.__class__(**{**l.__dict__, "shared_bits": jnp.asarray(kb * 8192.0)})
            if l.per_pe:
                l = l.__class__(**{**l.__dict__, "capacity_bits": l.capacity_bits * s_rf})
            lv.append(l)
        corners.append(arch.replace(levels=tuple(lv), pe_rows=jnp.asarray(float(r)),
                                    pe_cols=jnp.asarray(float(c))))
    del lo
    t0 = time.perf_counter()
    cs = hwmodel.mapping_candidates(wl, corners, per_layer=6)
    t_cs = time.perf_counter() - t0
    sarchs = sized_archs(arch, n_arch)
    fc = jax.jit(jax.vmap(lambda a: hwmodel.cost(wl, a, candidates=cs).energy_pj))
    t_vc = timeit(lambda: fc(sarchs), repeat=max(rep // 4, 3), warmup=1)
    f1 = jax.jit(lambda a: hwmodel.cost(wl, a, candidates=cs).energy_pj)
    t_one_c = timeit(lambda: [f1(index_arch(sarchs, i)) for i in range(k)], repeat=2,
                     warmup=1) / k
    e = np.asarray(fc(sarchs))
    rows.append((f"vmap over {n_arch} sized archs, K={cs.K} cands", t_vc,
                 f"Python loop of jitted cost (scaled x{n_arch})", t_one_c * n_arch, "time it"))

    # 6. simulator vs analytic on one small layer
    small = hwmodel.LayerSpec(name="small", kind="conv", M=8, C=4, P=8, Q=8, R=3, S=3,
                              H=10, W=10)
    m = hwmodel.map_layer(small, arch)
    t_sim = timeit(lambda: hwmodel.simulate(small, arch, m), repeat=3, warmup=0)
    sm = stack_mappings([m])
    t_an = timeit(lambda: evaluate_stack(small, arch, sm), repeat=rep)
    rows.append((f"analytic counts, 1 layer ({small.macs} MACs)", t_an,
                 "brute-force simulate() same layer", t_sim, "exact ="))

    dev = jax.devices()[0]
    print(f"cost-model benchmark: resnet50 ({L} layers, {wl.total_macs / 1e9:.2f} GMACs) on "
          f"eyeriss; device {dev.platform} ({dev.device_kind}); jax {jax.__version__}; "
          f"{os.cpu_count()} CPU cores")
    print(f"(candidate set for row 5 built from 3 corner archs in {t_cs:.1f} s; "
          f"legal layers: {np.isfinite(e).mean() * 100:.1f}% of archs fully legal, "
          f"energy {np.nanmin(e) / 1e9:.1f}-{np.nanmax(e) / 1e9:.1f} mJ)")
    w = max(len(r[0]) for r in rows)
    wb = max(len(r[2]) for r in rows)
    print(f"{'measurement':<{w}}  {'time':>10}  {'baseline':<{wb}}  {'time':>10}  "
          f"{'speed-up':>9}  target")
    for name, t, bname, tb, target in rows:
        print(f"{name:<{w}}  {fmt(t):>10}  {bname:<{wb}}  {fmt(tb):>10}  {tb / t:8.1f}x  "
              f"{target}")


if __name__ == "__main__":
    main()
