"""The one Pareto-front function (``codesign._report.nondominated``) against a
brute-force O(n^2) dominance check, and its two users (sweeps, design searches)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from codesign._report import nondominated

# few distinct values: ties in one or both coordinates are common
coord = st.one_of(st.integers(-4, 4).map(float), st.sampled_from([float("inf"), -float("inf")]))
points = st.lists(st.tuples(coord, coord), max_size=25)


def _brute_force(pts):
    """Coordinates not dominated by any other point (both minimized)."""
    def dominates(q, p):
        return q[0] <= p[0] and q[1] <= p[1] and q != p
    return {p for p in pts if not any(dominates(q, p) for q in pts)}


@given(points)
def test_front_equals_brute_force_dominance(pts):
    items = list(enumerate(pts))  # (input index, point): identity of each item
    front = nondominated(items, key=lambda it: it[1])
    coords = [p for _, p in front]
    assert set(coords) == _brute_force(pts)
    assert len(coords) == len(set(coords))  # equal points count once ...
    for i, p in front:  # ... the first in input order stands for them
        assert i == pts.index(p)
    assert coords == sorted(coords, key=lambda p: p[0])  # by increasing x
    assert all(a[1] > b[1] for a, b in zip(coords, coords[1:]))  # so decreasing y


@given(points)
def test_maximizing_a_coordinate_by_negation(pts):
    """The sweep's front: low energy, high accuracy."""
    front = nondominated(pts, key=lambda p: (p[0], -p[1]))
    neg = {(x, -y) for x, y in pts}
    assert {(x, -y) for x, y in front} == _brute_force(list(neg))


def test_design_front_is_the_feasible_nondominated_designs():
    from types import SimpleNamespace as NS

    from codesign.design import pareto_front

    ds = [NS(feasible=f, area_mm2=a, objective=o) for f, a, o in [
        (True, 2.0, 5.0), (True, 1.0, 6.0), (False, 0.5, 1.0), (True, 3.0, 5.0),
        (True, 2.0, 4.0), (True, 4.0, 1.0)]]
    assert [(d.area_mm2, d.objective) for d in pareto_front(ds)] == [(1.0, 6.0), (2.0, 4.0),
                                                                      (4.0, 1.0)]
