"""The benchmark scripts run (tiny settings) and report what they promise; nothing is timed."""
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_step_benchmark_quick(tmp_path):
    out = tmp_path / "r.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/train_step.py", "--quick", "--modes=eager,function",
         f"--json={out}"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["mode"] for r in report["rows"]] == ["eager", "function"]
    assert report["flops_per_step"] > 1e8  # a K=3 32x32 step is several GFLOP
    assert report["machine_gflops"]["matmul"] > 0
    assert "median s" in result.stdout and "GFLOP" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("script", ["sample.py", "decompose.py"])
def test_inference_benchmarks_quick(tmp_path, script):
    out = tmp_path / "r.json"
    result = subprocess.run([sys.executable, f"benchmarks/{script}", "--quick", f"--json={out}"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["what"] == script[:-3] and report["images_per_s"] > 0
    assert "img/s" in result.stdout
