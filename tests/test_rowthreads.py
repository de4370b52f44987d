"""Row ranges of a large host matrix, one per thread (zipfrmt.rowthreads)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from zipfrmt import rowthreads


@pytest.mark.parametrize("rows,align", [(1000, 1), (1001, 256), (5, 1), (257, 256)])
def test_the_ranges_cover_every_row_once_in_order_on_aligned_edges(monkeypatch, rows, align):
    monkeypatch.setattr(rowthreads, "workers", lambda: 3)
    seen = rowthreads.map_row_ranges(lambda lo, hi: (lo, hi, threading.get_ident()), rows, rowthreads.MIN_ENTRIES,
                                     align)
    edges = [lo for lo, _, _ in seen] + [seen[-1][1]]
    assert edges[0] == 0 and edges[-1] == rows
    assert all(hi == lo_next for (_, hi, _), (lo_next, _, _) in zip(seen[:-1], seen[1:], strict=True))
    assert all(lo < hi for lo, hi, _ in seen)
    assert all(lo % align == 0 for lo, _, _ in seen)
    assert len(seen) == min(3, -(-rows // align))


def test_a_small_matrix_is_one_call_on_the_callers_thread():
    me = threading.get_ident()
    assert rowthreads.map_row_ranges(lambda lo, hi: (lo, hi, threading.get_ident()), 10**6,
                                     rowthreads.MIN_ENTRIES - 1) == [(0, 10**6, me)]


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX's warning, where JAX is loaded: the child uses none
def test_a_forked_child_starts_its_own_pool():
    """A child forked after the pool started has none of its threads; it must not wait on them."""
    rowthreads.map_row_ranges(lambda lo, hi: hi - lo, 100, rowthreads.MIN_ENTRIES)  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # the child: a pass over row ranges finishes, or the parent's timeout below fails the test
        ok = sum(rowthreads.map_row_ranges(lambda lo, hi: hi - lo, 100, rowthreads.MIN_ENTRIES)) == 100
        os._exit(0 if ok else 1)
    for _ in range(200):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    pytest.fail("the forked child hung on the parent's thread pool")


@pytest.mark.parametrize("kwargs,message", [
    ({"rows": 0, "entries": 10}, r"rows: expected an integer ≥ 1, got 0"),
    ({"rows": 10, "entries": -1}, r"entries: expected an integer ≥ 0, got -1"),
    ({"rows": 10, "entries": 10, "align": 0}, r"align: expected an integer ≥ 1, got 0"),
    ({"rows": 2.5, "entries": 10}, r"rows: expected an integer ≥ 1, got 2.5"),
])
def test_bad_arguments_are_named_before_any_call(kwargs, message):
    calls = []
    with pytest.raises(ValueError, match=message):
        rowthreads.map_row_ranges(lambda lo, hi: calls.append((lo, hi)), **kwargs)
    assert calls == []
