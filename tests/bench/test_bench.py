"""The benchmark suite produces figures (never a timing threshold), counts FLOPs right,
and its PyTorch peer is the same network."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT


def test_quick_run_writes_figures_and_a_table(tmp_path, capsys):
    # The runner's main() here, not `python -m bench` (which test_runner_rejects_unknown_benchmarks starts):
    # the runner imports fcn_keras, and so TensorFlow, which this process has done already. Its measurements
    # still run in workers of their own.
    from bench.__main__ import main

    status = main(["--quick", "--only", "inference", "--out", str(tmp_path)])
    assert status == 0, capsys.readouterr().err[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["machine"]["nproc"] >= 1 and results["machine"]["cpu"]
    rows = results["benchmarks"]["inference"]["rows"]
    assert rows and all(row["error"] is None for row in rows), rows
    for row in rows:
        for key in ("median_s", "gflop_per_image", "matmul_gflops", "efficiency", "peak_rss_mb"):
            assert row[key] > 0, (key, row)
    report = (tmp_path / "results.md").read_text()
    assert "| variant | backend | precision | input | median s |" in report, report
    assert "| call | tensorflow | float32 | 1x64x64 |" in report


def test_runner_rejects_unknown_benchmarks(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench", "--only", "nonesuch", "--out", str(tmp_path)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "nonesuch" in done.stderr and "inference" in done.stderr


def test_the_jax_backend_runs_the_backend_aware_benchmarks_and_their_jax_variants(capsys):
    from bench import bench_inference, bench_train
    from bench.__main__ import main

    with pytest.raises(SystemExit) as exit_:  # parsed before anything is measured
        main(["--backend", "jax", "--only", "inference", "export", "--out", "/nonexistent"])
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and "['export'] run on the TensorFlow backend only" in error, error
    assert "['inference', 'train']" in error
    jobs = bench_inference.plan(quick=False, backend="jax")
    assert {job.backend for job in jobs} == {"jax"}
    assert {job.variant for job in jobs} == {"call", "predict", "plain", "torch"}
    assert any(job.policy == "mixed_bfloat16" and job.size == 500 for job in jobs)
    assert sorted(note.split(":")[0] for note in bench_inference._left_out("jax")) == [
        "call_malloc", "saved_model", "tflite", "xla"]
    with pytest.raises(ValueError, match="backend must be one of"):
        bench_train.plan(quick=True, backend="torch")


@pytest.fixture(scope="module")
def fcn8s_model():
    from fcn_keras.models import build_fcn

    return build_fcn("fcn8s", num_classes=3, fast=False)  # the reference's layer-by-layer network


def test_flops_match_the_reference_geometry(fcn8s_model):
    from bench.flops import layer_flops

    flops = layer_flops(fcn8s_model, 500, 500)
    # fc6: a 7x7x512 -> 4096 convolution over pool5 (22x22 at 500x500) giving 16x16.
    assert flops["fc6"] == 2 * 7 * 7 * 512 * 4096 * 16 * 16
    # upscore8: dense 16x16 transposed convolution over the 70x70 fused scores.
    assert flops["upscore8"] == 2 * 16 * 16 * 3 * 3 * 70 * 70
    # The reference facts: about 362 GFLOP for FCN-8s at 500x500 (conv1_1's 100-pixel pad included).
    assert 360e9 < sum(flops.values()) < 364e9
    assert sum(layer_flops(fcn8s_model, 320, 320, batch=8).values()) == 8 * sum(
        layer_flops(fcn8s_model, 320, 320).values())


def test_flops_count_the_reference_graph_whatever_the_calls_compute(fcn8s_model):
    """The fast formulation runs inside call(): the graph, and so the count, is the reference's."""
    from bench.flops import layer_flops
    from fcn_keras.models import fcn8s

    fast = fcn8s(num_classes=3)
    assert fast.fast and not fcn8s_model.fast
    assert layer_flops(fast, 500, 500) == layer_flops(fcn8s_model, 500, 500)


def test_torch_peer_computes_the_same_network(fcn8s_model):
    torch = pytest.importorskip("torch", reason="the PyTorch peer is a bench extra: pip install fcn_keras[bench]")
    from bench.torch_peer import from_keras

    rng = np.random.default_rng(0)
    for layer in fcn8s_model.layers:  # non-zero scores and non-bilinear upsampling: every layer shows
        if layer.name.startswith(("score", "upscore")) and layer.weights:
            layer.set_weights([rng.normal(size=w.shape).astype("float32") * 0.05 for w in layer.get_weights()])
    x = (rng.normal(size=(1, 37, 50, 3)) * 60).astype("float32")
    expected = np.asarray(fcn8s_model(x))
    with torch.inference_mode():
        got = from_keras(fcn8s_model)(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
    assert got.shape == expected.shape == (1, 37, 50, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
