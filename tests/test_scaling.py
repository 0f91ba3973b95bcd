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
