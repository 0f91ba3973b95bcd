"""codesign.design: the hardware design-space search (projection, legality, relaxed
gradients, gradient search vs brute force on a tiny space, random search, YAML)."""

from __future__ import annotations

import csv
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hwmodel
from codesign import design as D
from tests._archs import TINY

# A tiny space on eyeriss: the array 1..4 x 1..4, RF.W 4 or 5 words, the rest fixed:
# 32 designs, few enough to evaluate every one exactly.
TINY_BOUNDS = {"pe_rows": (1, 4), "pe_cols": (1, 4), "GLB": (128, 128), "RF.W": (4, 5),
               "RF.I": (12, 12), "RF.O": (24, 24)}


@pytest.fixture(scope="module")
def space():
    return D.design_space("eyeriss")


@pytest.fixture(scope="module")
def ev(space):
    return D.Evaluator(space, {"tiny": TINY}, area_mm2=8.0, objective="edp")


def test_space_knobs_and_base_round_trip(space):
    assert space.names == ("pe_rows", "pe_cols", "GLB", "RF.W", "RF.I", "RF.O")
    base = space.base_values()
    np.testing.assert_array_equal(base, [12, 14, 108 * 1024 // 2, 224, 12, 24])
    a = space.arch(base)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(space.base)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_projection_is_legal_and_within_budget(space, ev):
    rng = np.random.default_rng(1)
    ll, lh = np.log(space.lo), np.log(space.hi)
    for budget in (5.0, 8.0, 30.0):
        e = D.Evaluator(space, {"tiny": TINY}, area_mm2=budget, reference=[1.0])
        for _ in range(6):
            raw = np.exp(rng.uniform(ll, lh))
            df = hwmodel.DATAFLOWS[int(rng.integers(5))]
            d = e.propose(raw, df, "test")
            assert d.legal and d.feasible
            v = np.asarray(d.values)
            assert np.all(v == np.round(v)) and np.all(v >= space.lo) and np.all(v <= space.hi)
            # checked independently: the area model and the exact mapper
            arch = space.arch(v)
            assert float(hwmodel.area_mm2(arch)) <= budget * (1 + D.AREA_RTOL)
            hwmodel.validate_architecture(arch)
            hwmodel.map_workload(TINY, arch, dataflow=df, objective="edp")  # raises if not


def test_projection_shrinks_to_the_budget(space):
    big = space.hi
    v = space.project(big, 9.0)
    assert space.area(v) <= 9.0 * (1 + D.AREA_RTOL)
    assert space.area(v) > 8.5  # uses the budget, not the smallest design
    assert v.dtype == np.int64


def test_impossible_budget_is_a_clear_error(space):
    m = space.min_area()
    with pytest.raises(D.DesignError, match=r"smaller than the smallest legal eyeriss design"):
        D.Evaluator(space, {"tiny": TINY}, area_mm2=m * 0.99)
    with pytest.raises(D.DesignError, match="smallest"):
        space.project(space.hi, m * 0.5)
    with pytest.raises(D.DesignError, match="unknown objective"):
        D.Evaluator(space, {"tiny": TINY}, area_mm2=10.0, objective="power")


def test_relaxed_gradients_finite_and_descent(ev, space):
    base = space.base_values()
    cands = D.gradient_candidates(ev, [space.project(base, ev.area_budget)], "rs")
    loss = D.relaxed_loss(ev, cands)
    x = jnp.log(jnp.asarray(base, jnp.float32))  # over the 8 mm^2 budget
    (val, (f, g, _)), grad = jax.value_and_grad(loss, has_aux=True)(x, 0.0, 0.0)
    grad = np.asarray(grad)
    assert grad.shape == (len(space.knobs),)
    assert np.all(np.isfinite(grad)) and np.all(grad > 0)  # over budget: every knob shrinks
    assert np.isfinite(float(val)) and float(g) > 0
    step = x - 1e-3 * grad / np.linalg.norm(grad)
    assert float(loss(step, 0.0, 0.0)[0]) < float(val)
    # finite everywhere in the box (corners too), every knob
    for corner in (space.lo, space.hi, np.sqrt(space.lo * space.hi)):
        gr = jax.grad(lambda z: loss(z, 0.3, 0.0)[0])(jnp.log(jnp.asarray(corner, jnp.float32)))
        assert np.all(np.isfinite(np.asarray(gr)))


def test_gradient_search_vs_brute_force_on_a_tiny_space():
    sp = D.design_space("eyeriss", dataflows=("rs",), bounds=TINY_BOUNDS)
    budget = 4.8
    brute = D.Evaluator(sp, {"tiny": TINY}, area_mm2=budget, objective="edp", reference=[1.0])
    grid = {k.name: range(k.lo, k.hi + 1) for k in sp.knobs}
    res_b = D.grid_search(brute, grid)
    every = [p for p in itertools.product(*grid.values())
             if sp.area(np.array(p, float)) <= budget * (1 + D.AREA_RTOL)]
    assert res_b.evaluations == len(every) and 8 < len(every) < 32  # the budget binds
    ev = D.Evaluator(sp, {"tiny": TINY}, area_mm2=budget, objective="edp", reference=[1.0])
    res_g = D.gradient_search(ev, restarts=2, rounds=2, steps=15, polish=0, seed=0)
    best_b, best_g = res_b.best, res_g.best
    assert res_g.evaluations < res_b.evaluations
    # the gradient search's design is an exactly evaluated legal integer design of the
    # grid: brute force evaluates it to the same numbers and is at least as good ...
    again = brute.evaluate(best_g.values, best_g.dataflow, "check")
    assert again.legal and again.objective == pytest.approx(best_g.objective, rel=1e-9)
    assert best_b.objective <= best_g.objective * (1 + 1e-9)
    # ... and the gradient search gets within 5% of the optimum
    assert best_g.objective <= best_b.objective * 1.05, (best_g, best_b)


def test_pattern_search_ends_at_a_local_optimum(space):
    start = space.base_values()
    runs = []
    for _ in range(2):
        e = D.Evaluator(space, {"tiny": TINY}, area_mm2=10.0, objective="edp", reference=[1.0])
        first = e.propose(start, "rs", "start")
        res = D.pattern_search(e, start, 400, dataflow="rs")
        runs.append([(d.values, d.objective) for d in res.designs])
    assert runs[0] == runs[1]  # deterministic
    best = res.best
    assert best.feasible and best.objective <= first.objective
    assert best.objective < first.objective  # eyeriss is not optimal for TINY
    assert res.evaluations < 400  # it stopped by itself: the finest sweep found nothing
    # brute force over the finest neighbours, on a fresh evaluator: none is better
    fresh = D.Evaluator(space, {"tiny": TINY}, area_mm2=10.0, objective="edp", reference=[1.0])
    f = 2.0 ** 0.25
    for i in range(len(space.knobs)):
        for up in (True, False):
            v = np.asarray(best.values, np.float64).copy()
            v[i] = max(v[i] * f, v[i] + 1) if up else min(v[i] / f, v[i] - 1)
            d = fresh.propose(v, "rs", "check")
            assert not (d.feasible and d.objective < best.objective * (1 - 1e-12)), (i, up, d)
    with pytest.raises(D.DesignError, match="factors"):
        D.pattern_search(fresh, start, 5, dataflow="rs", factors=(2.0, 1.0))


def test_gradient_search_polish_only_improves(space):
    e0 = D.Evaluator(space, {"tiny": TINY}, area_mm2=10.0, objective="edp", reference=[1.0])
    r0 = D.gradient_search(e0, restarts=2, rounds=1, steps=5, polish=0, seed=0)
    e1 = D.Evaluator(space, {"tiny": TINY}, area_mm2=10.0, objective="edp", reference=[1.0])
    r1 = D.gradient_search(e1, restarts=2, rounds=1, steps=5, polish=12, seed=0)
    assert [d.values for d in r1.designs[:r0.evaluations]] == [d.values for d in r0.designs]
    assert r0.evaluations < r1.evaluations <= r0.evaluations + 12 + 3  # + the last repairs
    assert {d.method for d in r1.designs[r0.evaluations:]} == {"polish"}
    assert r1.best.objective <= r0.best.objective


def test_random_search_is_reproducible(space):
    runs = []
    for seed in (7, 7, 8):
        e = D.Evaluator(space, {"tiny": TINY}, area_mm2=10.0, reference=[1.0])
        r = D.random_search(e, 5, seed=seed)
        runs.append([(d.values, d.dataflow, d.objective) for d in r.designs])
        assert r.evaluations >= 5
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_found_yaml_round_trips(tmp_path, ev, space):
    r = D.random_search(ev, 3, seed=0)
    best = r.best
    arch = space.arch(best.values, name="found")
    path = tmp_path / "found.yaml"
    hwmodel.save_arch(arch, path)
    loaded = hwmodel.load_arch(str(path))
    c = D.exact_costs([TINY], loaded, best.dataflow, "edp")[0]
    assert float(c.energy_pj) == pytest.approx(best.energy_pj[0], rel=1e-6)
    assert float(c.latency_s) == pytest.approx(best.latency_s[0], rel=1e-6)
    assert float(c.area_mm2) == pytest.approx(best.area_mm2, rel=1e-6)


def test_csv_and_pareto(ev, tmp_path):
    D.random_search(ev, 3, seed=1)
    path = tmp_path / "d.csv"
    D.write_designs_csv(path, ev)
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert len(rows) == ev.count
    assert {"pe_rows", "GLB", "RF.W", "area_mm2", "tiny_edp_js", "legal", "dataflow"} <= set(rows[0])
    pf = D.pareto_front(ev.designs)
    areas = [d.area_mm2 for d in pf]
    objs = [d.objective for d in pf]
    assert areas == sorted(areas) and objs == sorted(objs, reverse=True)
    for d in ev.designs:  # nothing feasible dominates a front member
        if d.feasible:
            assert not any(d.area_mm2 <= p.area_mm2 and d.objective < p.objective for p in pf)


# ----------------------------------------------------------------------------------
# A priced bandwidth is a knob
# ----------------------------------------------------------------------------------
def _priced_glb_bandwidth(coef: float = 0.05) -> hwmodel.Architecture:
    """``eyeriss`` with its GLB bandwidth priced in area (mm^2 per word/cycle)."""
    text = hwmodel.arch_to_yaml(hwmodel.load_arch("eyeriss"))
    anchor = "    area_mm2_per_kb: 0.01895\n"
    assert text.count(anchor) == 1
    text = text.replace(anchor, anchor + f"    area_mm2_per_word_per_cycle: {coef}\n")
    return hwmodel.parse_arch_yaml(text, "eyeriss_bw.yaml")


def test_bandwidth_knob_only_where_priced(space):
    assert not any(k.field == "bandwidth" for k in space.knobs)  # eyeriss prices none
    sp = D.design_space(_priced_glb_bandwidth())
    assert sp.names[-1] == "GLB.bw" and sp.knobs[-1].unit == "words/cycle"
    base = sp.base_values()
    assert base[-1] == 16 and (sp.lo[-1], sp.hi[-1]) == (1, 128)
    v = base.copy()
    v[-1] = 40
    arch = sp.arch(v)
    assert float(np.asarray(arch.level("GLB").bandwidth_words)) == 40
    assert sp.area(v) - sp.area(base) == pytest.approx(24 * 0.05, rel=1e-5)
    assert "GLB.bw 40 words/cycle" in sp.describe(v)
    assert not sp.is_per_pe(sp.knobs[-1])


def test_bandwidth_knob_gradient_and_descent():
    """The relaxed objective's gradient w.r.t. a priced bandwidth is finite, and with a
    GLB-bandwidth-bound layer, widening the bandwidth lowers the relaxed EDP."""
    sp = D.design_space(_priced_glb_bandwidth(0.001), dataflows=("rs",))
    e = D.Evaluator(sp, {"tiny": TINY}, area_mm2=30.0, objective="edp", reference=[1.0])
    v = sp.base_values()
    v[-1] = 1  # one word per cycle: the GLB bounds latency
    cands = D.gradient_candidates(e, [sp.project(v, 30.0)], "rs")
    loss = D.relaxed_loss(e, cands)
    x = jnp.log(jnp.asarray(v, jnp.float32))
    grad = np.asarray(jax.grad(lambda z: loss(z, 0.0, 0.0)[0])(x))
    assert np.all(np.isfinite(grad)) and grad[-1] < 0
    step = x.at[-1].add(0.1)
    assert float(loss(step, 0.0, 0.0)[0]) < float(loss(x, 0.0, 0.0)[0])


def test_gradient_search_with_a_bandwidth_knob_vs_brute_force():
    """On a tiny space where the array and the GLB bandwidth share the area budget, the
    gradient search with its default settings (seed 0) gets within 5% of the exhaustive
    optimum (3x4 PEs, 2 words/cycle).  The space is rugged: with seed 1, or the descent
    with 2 restarts, it ends at 3x3 PEs and 4 words/cycle, 13% above, a local optimum
    for one-knob moves (reaching 3x4 means trading bandwidth for a column at once)."""
    sp = D.design_space(_priced_glb_bandwidth(0.05), dataflows=("rs",),
                        bounds={**TINY_BOUNDS, "RF.W": (4, 4), "GLB.bw": (1, 8)})
    budget = 5.0
    brute = D.Evaluator(sp, {"tiny": TINY}, area_mm2=budget, objective="edp", reference=[1.0])
    grid = {k.name: range(k.lo, k.hi + 1) for k in sp.knobs}
    res_b = D.grid_search(brute, grid)
    bws = {int(d.values[-1]) for d in res_b.designs if d.legal}
    assert len(bws) > 1
    ev = D.Evaluator(sp, {"tiny": TINY}, area_mm2=budget, objective="edp", reference=[1.0])
    res_g = D.gradient_search(ev, seed=0)
    assert res_g.evaluations < res_b.evaluations
    again = brute.evaluate(res_g.best.values, res_g.best.dataflow, "check")
    assert again.legal and again.objective == pytest.approx(res_g.best.objective, rel=1e-9)
    assert res_g.best.objective <= res_b.best.objective * 1.05, (res_g.best, res_b.best)
    # the optimum does use the bandwidth knob: its best is not at the base's GLB.bw
    # clipped into the bounds unless that is truly best
    worse = brute.evaluate(np.r_[res_b.best.values[:-1], 1], "rs", "check")
    assert worse.objective >= res_b.best.objective


def test_co_design_hardware_block_searches_a_priced_bandwidth():
    """The co-design hardware block (codesign.joint.hardware_search) moves the priced
    bandwidth knob like any other and returns a legal design within the budget."""
    from codesign import joint

    sp = D.design_space(_priced_glb_bandwidth(0.05), dataflows=("rs",))
    start = sp.base_values()
    cur, best, ev = joint.hardware_search(sp, {"tiny": TINY}, start, area_mm2=12.3,
                                          objective="latency", dataflow="rs",
                                          evaluations=16, seed=0)
    assert best.legal and best.area_mm2 <= 12.3 * (1 + D.AREA_RTOL)
    assert best.objective <= cur.objective
    assert len({d.values[-1] for d in ev.designs}) > 1  # GLB.bw was moved


# ---- word widths as knobs ---------------------------------------------------------------
def test_word_bit_knobs_scale_energies_and_pack_words():
    """``bits.W`` / ``bits.I``: absent by default; at the base widths the design is the
    base; narrower widths give hwmodel.scale_word_bits's energies and leave the area."""
    sp = D.design_space("eyeriss", word_bits={"W": (4, 16), "I": 8})
    assert sp.names[-2:] == ("bits.W", "bits.I")
    k = sp.knobs[-1]
    assert (k.lo, k.hi, k.unit, k.field) == (8, 8, "bits", "word_bits")
    base = sp.base_values()
    np.testing.assert_array_equal(base[-2:], [16, 16])
    at_base = sp.arch(base)
    for x, y in zip(jax.tree_util.tree_leaves(at_base), jax.tree_util.tree_leaves(sp.base)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    v = base.copy()
    v[-2:] = [4, 8]
    a = sp.arch(v)
    ref = hwmodel.scale_word_bits(sp.base, [4, 8, 16])
    assert np.asarray(a.word_bits).tolist() == [4, 8, 16]
    assert float(a.mac_energy_pj) == pytest.approx(float(ref.mac_energy_pj))
    for x, y in zip(a.levels, ref.levels):
        np.testing.assert_allclose(np.asarray(x.read_energy_pj), np.asarray(y.read_energy_pj))
    assert sp.area(v) == pytest.approx(sp.area(base))
    assert "words W 4 / I 8 b" in sp.describe(v)


def test_word_bit_search_takes_the_narrowest_width_on_energy():
    """Without accuracy in the loop a narrower word only saves energy: the search ends
    at the lower bound (why the widths are knobs only when the user asks for them)."""
    sp = D.design_space("eyeriss", dataflows=("rs",), word_bits={"W": (4, 16)},
                        bounds={k: v for k, v in TINY_BOUNDS.items() if k != "RF.W"})
    ev = D.Evaluator(sp, {"tiny": TINY}, area_mm2=8.0, objective="energy", reference=[1.0])
    best = D.gradient_search(ev, restarts=2, rounds=1, steps=10, polish=10, seed=0).best
    assert best.legal and int(best.values[sp.names.index("bits.W")]) == 4
    e16 = ev.evaluate(np.where(np.array(sp.names) == "bits.W", 16, best.values),
                      best.dataflow, "check")
    assert best.energy_pj[0] < e16.energy_pj[0]


def test_word_bits_bad_bounds_are_errors():
    with pytest.raises(D.DesignError, match="unknown operand 'Q'"):
        D.design_space("eyeriss", word_bits={"Q": 8})
    with pytest.raises(D.DesignError, match=r"1 <= lo <= hi <= 16"):
        D.design_space("eyeriss", word_bits={"W": (0, 8)})
