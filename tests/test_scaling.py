"""Size-dependent access energy (hwmodel.scale_access_energy) and its use by the design
search: the power law against a numpy formula, identity at the reference sizes, the
documented exponent recomputed from the shipped Accelergy table, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hwmodel
from codesign import design as D


def _resize(arch, glb_scale, rf_scale):
    """eyeriss with the GLB pool and each RF partition multiplied by the given factors."""
    glb, rf = arch.level("GLB"), arch.level("RF")
    arch = hwmodel.replace_level(arch, "GLB", shared_bits=np.asarray(glb.shared_bits) * glb_scale)
    cap = np.asarray(rf.capacity_bits) * np.asarray(rf_scale, np.float64)
    return hwmodel.replace_level(arch, "RF", capacity_bits=cap.astype(np.float32))


def test_factors_equal_the_power_law_per_operand_and_pool():
    ref = hwmodel.load_arch("eyeriss")
    rf_scale = np.array([0.25, 3.0, 2.0])
    for exponent in (0.3, 0.5, 1.0):
        a = hwmodel.scale_access_energy(_resize(ref, 4.0, rf_scale), ref, exponent)
        for name, factor in (("GLB", np.full(3, 4.0 ** exponent)), ("RF", rf_scale ** exponent)):
            lvl, base = a.level(name), ref.level(name)
            np.testing.assert_allclose(np.asarray(lvl.read_energy_pj),
                                       np.asarray(base.read_energy_pj) * factor, rtol=1e-6)
            np.testing.assert_allclose(np.asarray(lvl.write_energy_pj),
                                       np.asarray(base.write_energy_pj) * factor, rtol=1e-6)
        for name in ("DRAM", "NoC"):  # off-chip and the network are never scaled
            assert np.array_equal(np.asarray(a.level(name).read_energy_pj),
                                  np.asarray(ref.level(name).read_energy_pj))


def test_identity_at_reference_sizes_and_exponent_zero():
    ref = hwmodel.load_arch("eyeriss_45nm")
    same = hwmodel.scale_access_energy(ref, ref, 0.5)
    for a, b in zip(same.levels, ref.levels):
        assert np.array_equal(np.asarray(a.read_energy_pj), np.asarray(b.read_energy_pj))
    grown = _resize(ref, 8.0, [2.0, 2.0, 2.0])
    assert hwmodel.scale_access_energy(grown, ref, 0.0) is grown


def test_documented_exponent_is_the_fit_to_the_accelergy_table():
    """DEFAULT_ENERGY_EXPONENT is the least-squares slope of log energy vs log words over
    the on-chip memories of the eyeriss_45nm preset (the Accelergy 45 nm table)."""
    a = hwmodel.load_arch("eyeriss_45nm")
    pts = set()
    for lvl in a.levels:
        if lvl.kind not in ("sram", "rf"):
            continue
        cap, shared = np.asarray(lvl.capacity_bits), float(np.asarray(lvl.shared_bits))
        wb = np.asarray(a.word_bits) * np.ones(3)
        for j, x in enumerate(hwmodel.OPERANDS):
            if x in lvl.holds:
                bits = cap[j] if np.isfinite(cap[j]) else shared
                pts.add((bits / wb[j], float(np.asarray(lvl.read_energy_pj)[j])))
    assert len(pts) == 4
    words, energy = np.array(sorted(pts)).T
    slope = np.polyfit(np.log(words), np.log(energy), 1)[0]
    assert abs(slope - hwmodel.DEFAULT_ENERGY_EXPONENT) < 0.02, slope


def test_gradient_reaches_every_size_and_is_positive_for_a_fixed_mapping():
    import models

    space = D.design_space("eyeriss")
    wl = models.model_workload("lenet5")
    v = space.base_values()
    cs = hwmodel.mapping_candidates(wl, [space.arch(v)], dataflow="rs", objective="energy",
                                    per_layer=1)
    f = lambda x: hwmodel.cost(wl, space.arch(jnp.exp(x)), candidates=cs,  # noqa: E731
                               objective="energy", relaxed=True).energy_pj
    g = np.asarray(jax.grad(f)(jnp.log(jnp.asarray(v, jnp.float32))))
    assert np.all(np.isfinite(g))
    buffers = [i for i, k in enumerate(space.knobs) if k.level is not None]
    assert np.all(g[buffers] > 0), dict(zip(space.names, g))
    # without size-dependent energies a fixed mapping gives buffers no gradient
    flat = D.design_space("eyeriss", energy_exponent=0.0)
    f0 = lambda x: hwmodel.cost(wl, flat.arch(jnp.exp(x)), candidates=cs,  # noqa: E731
                                objective="energy", relaxed=True).energy_pj
    g0 = np.asarray(jax.grad(f0)(jnp.log(jnp.asarray(v, jnp.float32))))
    assert np.all(g0[buffers] == 0)


def test_design_energy_is_the_exact_cost_with_scaled_energies():
    """A smaller-buffer design costs what the cost model gives for the preset with its
    energies scaled by hand (numpy power law), and its YAML round-trips."""
    import models

    space = D.design_space("eyeriss")
    v = space.base_values().copy()
    v[space.names.index("GLB")] = 4096
    v[space.names.index("RF.W")] = 64
    arch = space.arch(v)
    ref = hwmodel.load_arch("eyeriss")
    by_hand = _resize(ref, 4096 / space.base_values()[space.names.index("GLB")],
                      [64 / 224, 1.0, 1.0])
    glb_f = (4096 / 55296) ** 0.5
    by_hand = hwmodel.replace_level(by_hand, "GLB",
                                    read_energy_pj=np.asarray(ref.level("GLB").read_energy_pj) * glb_f,
                                    write_energy_pj=np.asarray(ref.level("GLB").write_energy_pj) * glb_f)
    rf_f = np.array([(64 / 224) ** 0.5, 1.0, 1.0], np.float32)
    by_hand = hwmodel.replace_level(by_hand, "RF",
                                    read_energy_pj=np.asarray(ref.level("RF").read_energy_pj) * rf_f,
                                    write_energy_pj=np.asarray(ref.level("RF").write_energy_pj) * rf_f)
    wl = models.model_workload("lenet5")
    e1 = float(hwmodel.cost(wl, arch).energy_pj)
    e2 = float(hwmodel.cost(wl, by_hand).energy_pj)
    assert e1 == pytest.approx(e2, rel=1e-5)
    back = hwmodel.parse_arch_yaml(arch.to_yaml())
    assert float(hwmodel.cost(wl, back).energy_pj) == pytest.approx(e1, rel=1e-6)


def test_bad_exponent_and_mismatched_reference_are_one_line_errors():
    ref = hwmodel.load_arch("eyeriss")
    with pytest.raises(ValueError, match="exponent"):
        hwmodel.scale_access_energy(ref, ref, -0.5)
    with pytest.raises(ValueError, match="levels"):
        hwmodel.scale_access_energy(ref, hwmodel.load_arch("systolic_ws"), 0.5)
    with pytest.raises(D.DesignError, match="energy exponent"):
        D.design_space("eyeriss", energy_exponent=float("nan"))


def test_config_default_is_hwmodels():
    """The train config (kept free of JAX imports) states the same default exponent."""
    from codesign.config import Config

    assert Config().co_design_energy_exponent == hwmodel.DEFAULT_ENERGY_EXPONENT


# ---- word widths (hwmodel.scale_word_bits) ----------------------------------------------
def _lenet_on(arch):
    import models

    wl = models.model_workload("lenet5")
    return wl, hwmodel.stack_mappings(hwmodel.map_workload(wl, arch, dataflow="rs"))


def test_word_bits_identity_and_factors():
    ref = hwmodel.load_arch("eyeriss")
    same = hwmodel.scale_word_bits(ref, np.asarray(ref.word_bits))
    assert float(same.mac_energy_pj) == float(ref.mac_energy_pj)
    for a, b in zip(same.levels, ref.levels):
        assert np.array_equal(np.asarray(a.read_energy_pj), np.asarray(b.read_energy_pj))
    n = hwmodel.scale_word_bits(ref, [8, 4, 16])
    assert np.asarray(n.word_bits).tolist() == [8, 4, 16]
    assert float(n.mac_energy_pj) == pytest.approx(float(ref.mac_energy_pj) * 8 * 4 / 256)
    for a, b in zip(n.levels, ref.levels):
        np.testing.assert_allclose(np.asarray(a.write_energy_pj),
                                   np.asarray(b.write_energy_pj) * [0.5, 0.25, 1.0], rtol=1e-6)
        assert np.array_equal(np.asarray(a.capacity_bits), np.asarray(b.capacity_bits))
        assert float(a.bandwidth_words) == float(b.bandwidth_words) or not np.isfinite(
            float(b.bandwidth_words))
    assert float(hwmodel.area_mm2(n)) == pytest.approx(float(hwmodel.area_mm2(ref)))


def test_narrow_words_cost_what_the_bit_knobs_cost_on_the_same_mappings():
    """Two code paths, one number: the base architecture with the cost model's bit
    knobs (every access scaled by bits / word bits, MACs by the width product) and the
    architecture rescaled to those word widths give the same energy, per level, and the
    same DRAM bytes, mapping for mapping. Latency: the rescaled architecture keeps its
    bandwidths in words per cycle, so it is never faster than the knob path."""
    arch = hwmodel.load_arch("eyeriss")
    wl, maps = _lenet_on(arch)
    L = len(wl.layers)
    narrow = hwmodel.scale_word_bits(arch, [8, 4, 16])
    a = hwmodel.cost(wl, narrow, mappings=maps)
    b = hwmodel.cost(wl, arch, mappings=maps,
                     knobs=hwmodel.Knobs(w_bits=np.full(L, 8.0), i_bits=np.full(L, 4.0)))
    assert float(a.energy_pj) == pytest.approx(float(b.energy_pj), rel=1e-9)
    for k in b.energy_breakdown_pj:
        assert float(a.energy_breakdown_pj[k]) == pytest.approx(
            float(b.energy_breakdown_pj[k]), rel=1e-9), k
    assert float(a.dram_bytes) == pytest.approx(float(b.dram_bytes), rel=1e-9)
    assert float(a.latency_s) >= float(b.latency_s) * (1 - 1e-9)
    assert float(a.energy_pj) < 0.7 * float(hwmodel.cost(wl, arch, mappings=maps).energy_pj)


def test_narrow_words_pack_more_into_the_same_buffers():
    """Capacities stay in bits: the mapper, re-run on 4-bit inputs, uses tiles that do
    not fit the 16-bit architecture (an error there), and saves energy by them."""
    arch = hwmodel.load_arch("eyeriss")
    wl, maps = _lenet_on(arch)
    narrow = hwmodel.scale_word_bits(arch, [8, 4, 16])
    _, own = _lenet_on(narrow)
    with pytest.raises(ValueError, match="capacity"):
        hwmodel.cost(wl, arch, mappings=own)
    assert float(hwmodel.cost(wl, narrow, mappings=own).energy_pj) < float(
        hwmodel.cost(wl, narrow, mappings=maps).energy_pj)


def test_word_bits_gradient_and_errors():
    ref = hwmodel.load_arch("eyeriss")
    wl, maps = _lenet_on(ref)
    g = jax.grad(lambda w: hwmodel.cost(wl, hwmodel.scale_word_bits(ref, w),
                                        mappings=maps).energy_pj)(jnp.array([8.0, 8.0, 16.0]))
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g) > 0)
    for bad in ([8, 8], [8, 0, 16], [8, np.nan, 16]):
        with pytest.raises(ValueError, match="scale_word_bits"):
            hwmodel.scale_word_bits(ref, bad)


def test_the_shipped_8_bit_eyeriss_is_the_rescaled_preset():
    """experiments/archs/eyeriss_w8.yaml is hwmodel.scale_word_bits(eyeriss, [8, 8, 16])."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "archs" / "eyeriss_w8.yaml"
    got = hwmodel.load_arch(str(path))
    want = hwmodel.scale_word_bits(hwmodel.load_arch("eyeriss"), [8, 8, 16])
    for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=1e-6)
