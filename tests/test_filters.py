"""Category filters: which rows they let through, and a readable error for an unknown category."""

from __future__ import annotations

import pytest

from lookalike.recommend.filters import CategoryFilter

LABELS = ["fruit", "fruit", "tool", "bird", "tool"]


@pytest.mark.parametrize(
    ("category_filter", "query_categories", "expected"),
    [
        (CategoryFilter(), [], [True] * 5),
        (CategoryFilter(only=["tool"]), [], [False, False, True, False, True]),
        (CategoryFilter(exclude=["tool"]), [], [True, True, False, True, False]),
        (CategoryFilter(exclude_query_category=True), ["fruit"], [False, False, True, True, True]),
        (CategoryFilter(exclude_query_category=False), ["fruit"], [True] * 5),
        (CategoryFilter(only=["tool", "fruit"], exclude_query_category=True), ["fruit"], [0, 0, 1, 0, 1]),
    ],
)
def test_allowed_rows(category_filter, query_categories, expected):
    assert category_filter.allowed(LABELS, query_categories).tolist() == [bool(e) for e in expected]


def test_unknown_category_names_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown categories shoes; this catalog has bird, fruit, tool"):
        CategoryFilter(only=("shoes",)).check_known(LABELS)
    CategoryFilter(only=("bird",), exclude=("tool",)).check_known(LABELS)
