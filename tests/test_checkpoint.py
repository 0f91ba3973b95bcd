"""Checkpointer: exact round trip (incl. PRNG keys and BN stats), keep-last-N, mismatch errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from codesign._checkpoint import CheckpointMismatchError, Checkpointer, flatten_state, unflatten_state
from codesign._report import atomic_write_json, read_jsonl, results_table, Column


class Net(nnx.Module):
    def __init__(self, rngs, width=4):
        self.lin = nnx.Linear(3, width, rngs=rngs)
        self.bn = nnx.BatchNorm(width, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.drop(self.bn(self.lin(x)))


def _state(seed=0, width=4):
    m = Net(nnx.Rngs(seed), width)
    o = nnx.Optimizer(m, optax.adamw(1e-2), wrt=nnx.Param)
    m(jnp.ones((2, 3)))  # advance BN stats and the dropout RNG counter
    return nnx.split((m, o))[1]


def _bits(tree):
    out = []
    for x in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        out.append(np.asarray(x).tobytes())
    return out


def test_flatten_unflatten_exact():
    st = _state()
    flat = flatten_state(st)
    assert any(k.endswith("rngs.key.value") for k in flat) and any("bn.mean" in k for k in flat)
    back = unflatten_state(flat, _state(seed=1))
    assert _bits(back) == _bits(st)
    key_leaf = [x for x in jax.tree.leaves(back) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)]
    assert key_leaf, "PRNG keys come back as typed keys"


def test_unflatten_mismatch_names_keys():
    flat = flatten_state(_state(width=4))
    with pytest.raises(CheckpointMismatchError, match=r"expected float32\[5\]"):
        unflatten_state(flat, _state(width=5))
    del flat[next(k for k in flat if "bn.mean" in k)]
    with pytest.raises(CheckpointMismatchError, match=r"missing \['0.bn.mean.value'\]"):
        unflatten_state(flat, _state())


def test_checkpointer_round_trip_and_keep_last(tmp_path):
    st = _state()
    ck = Checkpointer(tmp_path / "ck", keep=2)
    for e in (1, 2, 3):
        ck.save(e, st, {"epoch": e, "history": [{"loss": 0.5 * e}]})
    ck.wait()
    assert ck.all_epochs() == [2, 3] and ck.latest_epoch() == 3
    restored, meta = ck.restore(3, _state(seed=5))
    assert meta == {"epoch": 3, "history": [{"loss": 1.5}]}
    assert _bits(restored) == _bits(st)
    flat, _ = ck.restore_flat(2)
    assert {k: v.tobytes() for k, v in flat.items()} == {k: v.tobytes() for k, v in flatten_state(st).items()}
    with pytest.raises(CheckpointMismatchError):
        ck.restore(3, _state(width=6))
    ck.close()
    # a fresh manager on the same directory sees the same checkpoints
    ck2 = Checkpointer(tmp_path / "ck", keep=2)
    assert ck2.latest_epoch() == 3
    ck2.close()


def test_atomic_json_and_table(tmp_path):
    p = tmp_path / "r.json"
    atomic_write_json(p, {"a": 1})
    atomic_write_json(p, {"a": 2})
    assert p.read_text().strip().endswith("}") and '"a": 2' in p.read_text()
    assert list(tmp_path.iterdir()) == [p]
    (tmp_path / "m.jsonl").write_text('{"x": 1}\n\n{"x": 2}\n')
    assert read_jsonl(tmp_path / "m.jsonl") == [{"x": 1}, {"x": 2}]
    (tmp_path / "bad.jsonl").write_text('{"x": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_jsonl(tmp_path / "bad.jsonl")
    row = {"model": "m", "dataset": "d", "test_accuracy": 0.9912, "params": 1234567, "macs": None,
           "batch_size": 128, "wall_time_s": 12.34, "images_per_s": 4567.8, "energy_uj": 3.5}
    t = results_table([row])
    assert "99.12%" in t and "1.23M" in t and "n/a" in t and "4,568" in t and "12.3 s" in t
    t2 = results_table([row], columns=[Column("model", "model", align="left"),
                                       Column("energy_uj", "energy (uJ)", lambda v: f"{v:.1f}")])
    assert t2.splitlines()[0].split() == ["model", "energy", "(uJ)"] and "3.5" in t2
