"""Strict test setup (in the Equinox style): rank promotion raises, warnings are errors."""

import os

# Tests run on the CPU; several tests need more than one (virtual) device.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

from hypothesis import settings  # noqa: E402

# Small, deterministic property tests by default; `--hypothesis-profile=thorough` for more.
settings.register_profile("default", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
