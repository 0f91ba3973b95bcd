"""Joint network + hardware training (codesign.joint, ``codesign train --co-design``) on
tiny synthetic data."""

from __future__ import annotations

import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import hwmodel
import models
from codesign import cli, design, energy, joint
from codesign.config import ConfigError
from codesign.train import train_and_evaluate
from tests.test_energy_train import REPO, tiny

EYERISS_AREA = float(hwmodel.area_mm2(hwmodel.load_arch("eyeriss")))


def co(**kw):
    base = dict(method="gates", co_design=True, area_mm2=12.25, co_design_evaluations=6,
                gate_lr=0.2, epochs=3, gate_freeze_epochs=1)
    base.update(kw)
    return tiny(**base)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("co") / "run"
    rep = train_and_evaluate(co(energy_weight=3.0), wd, print_table=False)
    return wd, rep


def test_writes_hardware_yaml_within_budget_that_round_trips(run, capsys):
    wd, rep = run
    arch = hwmodel.load_arch(str(wd / joint.HARDWARE_FILE))
    assert float(hwmodel.area_mm2(arch)) <= 12.25 * (1 + design.AREA_RTOL)
    assert rep["hw_area_mm2"] == pytest.approx(float(hwmodel.area_mm2(arch)), rel=1e-6)
    assert rep["co_design"]["found"]["knobs"]["pe_rows"] == int(arch.pe_rows)
    # load the run's network and the file, cost: the report's numbers (penalty mode: the
    # checkpoint's gates are the reported network's)
    assert cli.main(["cost", "--run", str(wd), "--arch", str(wd / joint.HARDWARE_FILE),
                     "--json"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["energy_pj"] * 1e-6 == pytest.approx(rep["energy_per_inference_uj"], rel=1e-6)
    assert c["energy_pj"] * 1e-6 == pytest.approx(rep["hw"]["energy_per_inference_uj"], rel=1e-6)
    # and on the starting preset: the report's hw_start
    assert cli.main(["cost", "--run", str(wd), "--arch", "eyeriss", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["energy_pj"] * 1e-6 == pytest.approx(rep["hw_start"]["energy_per_inference_uj"],
                                                  rel=1e-6)


def test_found_hardware_is_no_worse_than_the_start(run):
    wd, rep = run
    assert 12.25 * (1 + design.AREA_RTOL) >= EYERISS_AREA  # the preset is a candidate
    assert rep["energy_per_inference_uj"] <= rep["hw_start"]["energy_per_inference_uj"] * (1 + 1e-9)
    searches = rep["co_design"]["searches"]
    assert [s["label"] for s in searches] == ["epoch 1", "epoch 2", "final"]
    assert all(s["after"] <= s["before"] for s in searches)
    assert searches[0]["before"] == pytest.approx(rep["dense"]["energy_per_inference_uj"], rel=1e-6)
    # relative figures divide by the dense network on the starting preset
    assert rep["hw"]["hw_objective_relative"] == pytest.approx(
        rep["energy_per_inference_uj"] / rep["dense"]["energy_per_inference_uj"], rel=1e-5)
    rows = [json.loads(l) for l in (wd / "metrics.jsonl").read_text().splitlines()]
    assert "hw_design" in rows[0] and "hw_design" in rows[1] and "hw_design" not in rows[2]
    md = (wd / "report.md").read_text()
    assert "on the found hardware" in md and "on the starting hardware (eyeriss)" in md


def test_resume_adopts_the_checkpoint_hardware_and_keeps_the_reference():
    cfg = co(energy_budget=0.5)
    model = models.create("lenet5", rngs=nnx.Rngs(0))
    energy.prepare_model(model, cfg)
    start = energy.build_objective(model, cfg, (28, 28, 1))
    hooks = joint.CoDesignHooks(model, cfg, (28, 28, 1), start)
    assert hooks.objective is start and np.all(np.asarray(model.hw_design[...]) == 0)
    held = hooks.space.project(hooks.start_values * np.array([2, 1, 1, 1, 1, 1]), 12.25)
    model.hw_design.set_value(jnp.asarray(held, jnp.float32))  # as restored from a checkpoint
    hooks.before_epoch(model, None, 2)  # the frozen epoch: no search, but the design is adopted
    assert np.array_equal(hooks.values, held)
    assert int(hooks.objective.arch.pe_rows) == held[0]
    assert hooks.objective.reference_value == start.dense_value != hooks.objective.dense_value


@pytest.mark.parametrize("kw,msg", [
    (dict(method="none", energy_weight=0.0), "co_design .*needs --method gates, not 'none'"),
    (dict(method="flops-gates"), "not 'flops-gates'.*MACs"),
    (dict(area_mm2=0.0), "area_mm2.*needs an area budget > 0"),
    (dict(hw_objective="dram"), "hw_objective.*energy, latency, edp"),
    (dict(co_design=False), "area_mm2.*pass --co-design"),
    (dict(co_design_evaluations=0), "co_design_evaluations.*>= 1"),
    (dict(co_design_energy_exponent=-1.0), "co_design_energy_exponent.*\\[0, 2\\]"),
])
def test_bad_co_design_fields_are_one_line_errors(kw, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        co(**{"energy_weight": 1.0, **kw})
    assert "\n" not in str(e.value)


def test_budget_below_the_smallest_design_is_a_one_line_error(tmp_path):
    wd = tmp_path / "w"
    with pytest.raises(ConfigError, match="area_mm2.*smaller than the smallest legal") as e:
        train_and_evaluate(co(energy_weight=1.0, area_mm2=1.0), wd, print_table=False)
    assert "\n" not in str(e.value)
    assert not wd.exists()  # checked before the workdir is touched
    p = subprocess.run([sys.executable, "-m", "codesign", "train", "smoke", "--method", "gates",
                        "--energy-weight", "1", "--co-design", "--workdir", str(wd)],
                       cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "area_mm2" in p.stderr
