"""A small run of benchmarks/hostile.py: fuzzed uploads, bombs, big pictures and a heat-map burst against app.py."""

from __future__ import annotations

import pytest

from benchmarks.hostile import ENDPOINTS, ROUTES, HostileConfig, run, started_app
from lookalike.app.traffic import BUSY_MESSAGE, TrafficLimits

WAITING_EXPLAINS = dict(TrafficLimits.max_waiting_by_kind)["explain"]


@pytest.mark.slow
def test_hostile_traffic_gets_answers_or_readable_refusals_and_bounded_resources(small_index_dir, tmp_path):
    config = HostileConfig(recommend_uploads=60, per_endpoint_uploads=12, burst=24, big_pictures=2, seed=1)
    with started_app(small_index_dir.parent, tmp_path, {}) as (url, pid, temp_dir):
        figures = run(url, pid, temp_dir, config)
    for endpoint in ENDPOINTS:
        fuzzed = figures["fuzz"][endpoint]
        assert fuzzed["unreadable_errors"] == 0 and fuzzed["server_errors"] == 0, fuzzed["failures_sample"]
        assert fuzzed["answered"] + fuzzed["refused_readably"] == fuzzed["uploads"]
        assert fuzzed["answered"] > 0  # the fuzz keeps some pictures readable: the model ran
    for name, refusal in figures["refusals"].items():
        assert refusal["outcome"] == "refused", (name, refusal)
        assert refusal["seconds"] < 2 and refusal["extra_rss_mb"] < 50, (name, refusal)  # < 0.5 s when quiet
    big = figures["big_pictures"]
    assert big["answered"] == 2 and big["settled_above_start_mb"] < 300, big
    for route in ROUTES:
        burst = figures["explain_burst"][route]
        assert burst["unreadable_errors"] == 0 and burst["server_errors"] == 0, (route, burst)
        assert burst["recommend_answered"] == burst["recommend_calls"] and burst["recommend_p95_s"] <= 2, burst
        assert burst["rss_settled_above_before_mb"] < 300, burst
    for queued in ("call", "queue"):  # the API's and the page's queue: one running, the waiting cap, then busy
        burst = figures["explain_burst"][queued]
        assert 1 <= burst["answered"] <= WAITING_EXPLAINS + 1, burst
        assert any(BUSY_MESSAGE in message for message in burst["messages"]), burst
    # The direct route runs nothing beside the queue: every call is told to join it.
    direct = figures["explain_burst"]["run"]
    assert direct["answered"] == 0 and direct["refused_readably"] == direct["explain_calls"], direct
    assert figures["temp_growth_total_mb"] < 50 and figures["still_answers"]
