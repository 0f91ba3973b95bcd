"""Fixtures shared by the hwmodel.cost tests: the tiny workload mapped on eyeriss.

Import the fixtures by name in a test module (``from tests._cost_fixtures import arch,
maps``); pytest then provides them as if they were defined there.
"""

from __future__ import annotations

import jax
import pytest

import hwmodel
from tests._archs import TINY, TINY_LAYERS

LAYERS = TINY_LAYERS
WL = TINY
L = len(LAYERS)


@pytest.fixture(scope="module")
def arch():
    """The ``eyeriss`` preset."""
    return hwmodel.load_arch("eyeriss")


@pytest.fixture(scope="module")
def maps(arch):
    """The mapper's RS mappings of :data:`WL` on ``arch``."""
    return hwmodel.map_workload(WL, arch, dataflow="rs")


@pytest.fixture(scope="module")
def cost_fn(arch, maps):
    """``jit(lambda arch, knobs: cost(WL, arch, mappings=maps, knobs=knobs))``."""
    return jax.jit(lambda a, k: hwmodel.cost(WL, a, mappings=maps, knobs=k))
