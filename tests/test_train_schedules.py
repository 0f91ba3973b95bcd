"""Learning-rate schedules against closed-form references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from codesign.config import Config, ConfigError
from codesign.train import make_schedule


def _cfg(**kw):
    base = dict(epochs=10, learning_rate=0.4)
    base.update(kw)
    return Config(**base)


def _ref_cosine(step, lr, warmup, total):
    if step < warmup:
        return lr * step / warmup
    t = (step - warmup) / (total - warmup)
    return 0.5 * lr * (1 + math.cos(math.pi * min(t, 1.0)))


@pytest.mark.parametrize("warmup_epochs", [0.0, 1.0, 2.5])
def test_cosine_matches_reference(warmup_epochs):
    spe = 20
    cfg = _cfg(schedule="cosine", warmup_epochs=warmup_epochs)
    sched = make_schedule(cfg, spe)
    total, warmup = cfg.epochs * spe, int(round(warmup_epochs * spe))
    for step in [0, 1, warmup, warmup + 1, total // 2, total - 1, total]:
        assert float(sched(step)) == pytest.approx(_ref_cosine(step, 0.4, warmup, total), abs=1e-6)


def test_constant_with_warmup():
    sched = make_schedule(_cfg(schedule="constant", warmup_epochs=1.0), 10)
    assert float(sched(0)) == 0.0
    assert float(sched(5)) == pytest.approx(0.2)
    assert float(sched(10)) == pytest.approx(0.4)
    assert float(sched(99)) == pytest.approx(0.4)
    assert float(make_schedule(_cfg(schedule="constant"), 10)(0)) == pytest.approx(0.4)


def test_onecycle_endpoints_and_peak():
    spe = 10
    cfg = _cfg(schedule="onecycle", warmup_epochs=3.0, onecycle_div_factor=25.0, onecycle_final_div_factor=1e4)
    sched = make_schedule(cfg, spe)
    total = 100
    lrs = np.array([float(sched(s)) for s in range(total + 1)])
    assert lrs[0] == pytest.approx(0.4 / 25)
    assert int(np.argmax(lrs)) == 30
    assert lrs[30] == pytest.approx(0.4)
    assert lrs[-1] == pytest.approx(0.4 / 25 / 1e4, rel=1e-3)
    assert np.all(np.diff(lrs[:31]) >= 0) and np.all(np.diff(lrs[30:]) <= 1e-9)
    # cosine shape halfway through the fall: lr midway between peak and final
    mid = 30 + 35
    assert lrs[mid] == pytest.approx((0.4 + 0.4 / 25 / 1e4) / 2, rel=1e-3)


def test_onecycle_needs_warmup():
    with pytest.raises(ConfigError, match="warmup_epochs"):
        _cfg(schedule="onecycle", warmup_epochs=0.0)


@given(
    schedule=st.sampled_from(["constant", "cosine", "onecycle"]),
    epochs=st.integers(1, 8),
    spe=st.integers(1, 50),
    frac=st.floats(0.05, 0.95),
    lr=st.floats(1e-4, 1.0),
)
def test_schedules_bounded_and_peak(schedule, epochs, spe, frac, lr):
    cfg = Config(epochs=epochs, learning_rate=lr, schedule=schedule, warmup_epochs=frac * epochs)
    sched = make_schedule(cfg, spe)
    lrs = np.array([float(sched(s)) for s in range(epochs * spe + 1)])
    assert np.all(lrs >= 0) and np.all(lrs <= lr * (1 + 1e-5))
    assert lrs.max() == pytest.approx(lr, rel=1e-2) or epochs * spe < 4
