"""A quick seeded fuzz run: a few hundred malformed inputs, each ending in success or a named error."""

from __future__ import annotations

import pytest

from tests.fuzzing import MUTATION_KINDS, iterate_defects, run_cases

#: The quick run of ``make test``; ``benchmarks/fuzz.py --cases 10000`` is the long one (same cases first).
QUICK_CASES = 17 * 15
SEED = 20261201


@pytest.mark.slow
def test_malformed_inputs_end_in_success_or_a_named_error(tmp_path) -> None:
    report = run_cases(QUICK_CASES, SEED, tmp_path)
    counts = report.counts()
    assert all(sum(counts[kind].values()) == QUICK_CASES // len(MUTATION_KINDS) for kind in MUTATION_KINDS)
    assert not report.defects, report.summary() + "\n" + "\n".join(iterate_defects(report))
    # Damage is found, not ignored: most cases of most kinds are refused by name, and good input converts.
    verdicts = {v for counter in counts.values() for v in counter}
    assert {"ok", "named_error"} <= verdicts
