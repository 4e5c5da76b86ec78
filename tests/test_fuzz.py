"""Bounded fuzzing: mutated manifests through every command's input path end in an answer or a
located refusal, never in a traceback (scripts/fuzz.py runs many more)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fuzz import SEED_TEXT, exercise, run_one


def test_the_seed_works():
    assert exercise(SEED_TEXT) == "ok"


@settings(max_examples=120, deadline=None, database=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_mutated_manifests_never_crash(seed):
    crashes = []
    outcome = run_one(seed, lambda s, text, tb: crashes.append(f"seed {s}:\n{text}\n{tb}"))
    assert outcome in ("ok", "refused"), crashes[0]


@pytest.mark.parametrize("seed", range(40))
def test_fixed_seeds_never_crash(seed):
    crashes = []
    assert run_one(seed, lambda s, text, tb: crashes.append(f"{text}\n{tb}")) != "crash", crashes[0]
