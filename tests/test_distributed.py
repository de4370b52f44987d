"""zipfrmt.distributed on CPU: forced host devices (one process) and two local processes (jax.distributed).

Each case runs in a subprocess, because the device count is fixed when JAX starts (``XLA_FLAGS``)."""

import socket
import subprocess
import sys
import textwrap

import pytest

ONE_PROCESS = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, numpy as np
    from zipfrmt import distributed
    assert jax.device_count() == 4
    W = (np.random.default_rng(0).standard_normal((1001, 64)) * np.arange(1, 65) ** -0.5).astype(np.float32)
    W64 = W.astype(np.float64)
    G = distributed.sharded_gram(W)  # 1001 rows: padded to 1004, four blocks of 251
    ref = W64.T @ W64
    assert np.abs(G - ref).max() <= 1e-13 * np.abs(ref).max(), np.abs(G - ref).max()
    s = distributed.sharded_singular_values(W)
    assert np.max(np.abs(s / np.linalg.svd(W64, compute_uv=False) - 1)) < 1e-10
    xs = distributed.spread([W, W[:500], W[:300], W[:200], W[:100]])
    assert [next(iter(x.devices())).id for x in xs] == [0, 1, 2, 3, 0]
    print("ok")
""")

TWO_PROCESSES = textwrap.dedent("""
    import os, sys
    pid, port = int(sys.argv[1]), sys.argv[2]
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=pid)
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec
    from zipfrmt import distributed
    assert jax.device_count() == 4 and jax.local_device_count() == 2
    W = np.random.default_rng(0).standard_normal((800, 32)).astype(np.float32)
    mesh = distributed.row_mesh()
    local = W[pid * 400:(pid + 1) * 400]  # each host holds only its own rows
    g = jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec("rows", None)), local, (800, 32))
    G = distributed.sharded_gram(g, mesh)
    ref = W.astype(np.float64).T @ W.astype(np.float64)
    assert np.abs(G - ref).max() <= 1e-13 * np.abs(ref).max()
    print("ok", pid)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_gram_of_row_blocks_on_four_forced_host_devices_is_the_gram_of_the_matrix(tmp_path):
    script = tmp_path / "one.py"
    script.write_text(ONE_PROCESS)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


@pytest.mark.slow
def test_two_local_processes_each_holding_half_the_rows_get_the_whole_gram(tmp_path):
    script = tmp_path / "two.py"
    script.write_text(TWO_PROCESSES)
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(script), str(i), port], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for i, (p, (so, se)) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0 and f"ok {i}" in so, se[-3000:]
