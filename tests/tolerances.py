"""Tolerances for comparing floats that BLAS computed, and why each is what it is."""

import json

# Two BLAS kernels (or a blocked and a whole matrix product) round a float32 dot product of unit
# vectors differently in its last bits: OpenBLAS's Haswell kernel differs from the others by 1.2e-7
# on 16-d vectors; 1e-5 leaves room for 1280-d sums and a float64 reference, and is still far below
# any gap between two results that matters (cosine scores are shown to two decimals).
FLOAT32_DOT_TOLERANCE = 1e-5


def assert_same_results(found: list[dict], expected: list[dict], tolerance: float = FLOAT32_DOT_TOLERANCE) -> None:
    """Two answers' results (`Recommendation.as_dict`, best first) are the same products with the same fields
    and scores within `tolerance` (different BLAS calls computed them). Products whose scores tie within it
    may come in either order, and a tie for the last place may go either way: rounding decides those."""
    assert len(found) == len(expected)
    for mine, theirs in zip(found, expected, strict=True):
        assert abs(mine["score"] - theirs["score"]) <= tolerance, (mine, theirs)
    last = expected[-1]["score"] if expected else 0.0

    def above_the_last_tie(results: list[dict]) -> list[str]:
        return sorted(
            json.dumps({**r, "score": None}, sort_keys=True) for r in results if r["score"] > last + tolerance
        )

    assert above_the_last_tie(found) == above_the_last_tie(expected)
