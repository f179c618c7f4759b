"""Process resources: the cores a server's concurrent searches share."""

from __future__ import annotations

import os

from threadpoolctl import threadpool_info, threadpool_limits

from lookalike.runtime import share_blas_threads


def test_concurrent_searches_share_the_cores_in_blas():
    cores = os.cpu_count() or 1
    with threadpool_limits(limits=None):  # restores every library's threads on the way out
        assert share_blas_threads(2) == max(1, cores // 2)
        assert {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"} == {max(1, cores // 2)}
        assert share_blas_threads(4 * cores) == 1  # never none
