"""A run directory written before the refactor of issue 29 still works after it.

tests/fixtures/run_before_refactor/ was written by `python -m genesis_tf.train` of commit
82c4d2f (its README.md has the command); it is the old format under test and is never
regenerated. Every binary runs in a fresh process on its own copy of it (the fixture itself
is never written to), and all of them are started at once so they share the two cores.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "run_before_refactor"
# What the old train binary wrote; nothing else may appear in the committed fixture.
FIXTURE_FILES = {"checkpoint", "model.json", "operative_config.gin", "README.md",
                 "ckpt-4.index", "ckpt-4.data-00000-of-00001"}

# Bindings that rebuild the fixture's model and data. Only names that survive the
# refactor: the fixture's own operative_config.gin uses train.geco_* and other old names
# that the new code refuses, so a resume must not be fed that file. A later rename of
# one of these names is a one-line edit here.
BINDINGS = [
    "IMAGE_SIZE = 32",
    "NUM_SLOTS = 3",
    "Genesis.mask_latent_size = 4",
    "Genesis.comp_latent_size = 2",
    "Genesis.feature_size = 8",
    "Genesis.inference_lstm_units = 8",
    "Genesis.prior_lstm_units = 8",
    "train.dataset = 'synthetic'",
    "train.batch_size = 4",
    "train.steps_per_loop = 2",
    "train.checkpoint_every = 2",
    "train.seed = 29",
]
IMAGE_SIZE, NUM_SLOTS, MASK_LATENT, COMP_LATENT = 32, 3, 4, 2
# What evaluate printed for this checkpoint with the code that wrote it (8 synthetic test
# images, posterior means): the restored model must give the same numbers.
OLD_EVALUATION = {"fg_ari": 0.0, "ari": 0.0, "sc": 0.08300800358190549,
                  "msc": 0.07334391276041667}
TIMEOUT = 600

# Loads the export in a fresh process (TensorFlow only), runs `decompose` on a uint8 batch
# and checks that the exported weights are the fixture's own, not fresh ones.
LOAD_EXPORT = r"""
import hashlib, json, sys
import numpy as np
import tensorflow as tf

export, checkpoint = sys.argv[1], sys.argv[2]

def digests(path):
    reader = tf.train.load_checkpoint(path)
    found = {}
    for name, dtype in reader.get_variable_to_dtype_map().items():
        if dtype.is_floating:
            value = reader.get_tensor(name)
            if value.size > 1:
                found[name] = hashlib.sha1(value.tobytes()).hexdigest()
    return found

loaded = tf.saved_model.load(export)
images = tf.constant(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)), tf.uint8)
out = loaded.signatures["decompose"](images=images)
mask_sums = tf.reduce_sum(out["masks"], axis=1)
old = set(digests(checkpoint).values())
exported = digests(export + "/variables/variables")
print(json.dumps({
    "signatures": sorted(loaded.signatures.keys()),
    "shapes": {k: v.shape.as_list() for k, v in out.items()},
    "mask_sum_error": float(tf.reduce_max(tf.abs(mask_sums - 1.0))),
    "finite": all(bool(tf.reduce_all(tf.math.is_finite(tf.cast(v, tf.float32))))
                  for v in out.values()),
    "exported_weights": len(exported),
    "not_from_checkpoint": sorted(k for k, d in exported.items() if d not in old),
}))
"""


def fixture_step():
    """The step of the fixture's only checkpoint, from its checkpoint state file."""
    text = (FIXTURE / "checkpoint").read_text()
    return int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"', text).group(1))


STEP = fixture_step()


class Background:
    """A binary started now; result() waits for it and returns its CompletedProcess."""

    def __init__(self, args):
        # One thread per op pool: the binaries run side by side on two cores, where more
        # threads only contend (measured: 116 s for the module with TF's defaults).
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTRAOP_THREADS="1",
                   TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1")
        self.process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        self._output = {}
        # A thread drains the pipes so a chatty process never blocks on a full pipe.
        self._reader = threading.Thread(target=self._communicate, daemon=True)
        self._reader.start()

    def _communicate(self):
        try:
            self._output["out"] = self.process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self._output["out"] = self.process.communicate()

    def result(self):
        self._reader.join()
        out, err = self._output["out"]
        return subprocess.CompletedProcess(self.process.args, self.process.returncode,
                                           out, err)


def copy_of_fixture(directory):
    target = directory / "run"
    shutil.copytree(FIXTURE, target)
    return target


def start_evaluate(directory):
    run = copy_of_fixture(directory)
    return run, Background(["-m", "genesis_tf.evaluate", f"--model_dir={run}",
                            "--metrics=ari,sc", "--num_images=8", "--batch_size=4"])


def start_export(directory):
    run = copy_of_fixture(directory)
    return run, Background(["-m", "genesis_tf.export", f"--model_dir={run}",
                            f"--export_dir={directory / 'export'}"])


def start_visualise(directory):
    run = copy_of_fixture(directory)
    return run, Background(["-m", "genesis_tf.visualise", f"--model_dir={run}",
                            "--what=decomposition", f"--out={directory / 'd.png'}",
                            "--num_images=2"])


def start_resume(directory):
    run = copy_of_fixture(directory)
    bindings = [*BINDINGS, f"train.num_steps = {STEP + 2}"]
    return run, Background(["-m", "genesis_tf.train", "--gin_file=smoke.gin",
                            *[f"--gin_bindings={b}" for b in bindings],
                            f"--model_dir={run}"])


STARTERS = {"test_evaluate": start_evaluate, "test_export": start_export,
            "test_visualise": start_visualise, "test_resume": start_resume}


@pytest.fixture(scope="module")
def started(request, tmp_path_factory):
    """{test name: (copy of the fixture, Background)}, started together for the tests
    of this module that the session runs (after -k and the like)."""
    selected = {item.originalname for item in request.session.items
                if item.module is request.module}
    runs = {name: start(tmp_path_factory.mktemp(name))
            for name, start in STARTERS.items() if name in selected}
    yield runs
    for _, background in runs.values():
        background.process.kill()  # a session that stopped early; no-op once finished


def finished(started, name):
    run, background = started[name]
    result = background.result()
    assert result.returncode == 0, (
        f"{name} exited {result.returncode}\nstdout:\n{result.stdout}\n"
        f"stderr:\n{result.stderr}")
    return run, result


def test_fixture_is_the_old_run_untouched():
    # Written once by commit 82c4d2f: exactly one checkpoint, and nothing a test wrote.
    files = {p.relative_to(FIXTURE).as_posix() for p in FIXTURE.rglob("*") if p.is_file()}
    assert {f for f in files if "/" not in f} == FIXTURE_FILES
    assert {f.split("/")[0] for f in files if "/" in f} == {"train", "val"}  # TensorBoard
    assert STEP == 4
    assert json.loads((FIXTURE / "model.json").read_text())["class_name"] == "Genesis"
    # The old names are in the fixture's config: the test of a format that changes.
    assert "train.geco_alpha = 0.99" in (FIXTURE / "operative_config.gin").read_text()


def test_evaluate(started):
    run, result = finished(started, "test_evaluate")
    for metric in ("fg_ari", "sc"):
        assert re.search(rf"^{metric}\s+-?\d", result.stdout, re.M), result.stdout
    assert f"step {STEP}" in result.stdout  # the restored checkpoint's step
    written = sorted(run.glob("eval_*.json"))
    assert len(written) == 1, written
    record = json.loads(written[0].read_text())
    assert record["step"] == STEP
    means = {name: m["mean"] for name, m in record["metrics"].items()}
    assert {"fg_ari", "sc"} <= set(means)
    for name, value in means.items():
        assert -1.0 <= value <= 1.0, (name, value)
        assert record["metrics"][name]["count"] == 8
    for name, value in OLD_EVALUATION.items():
        assert means[name] == pytest.approx(value, abs=1e-4), (name, means)


def test_export(started, tmp_path):
    run, result = finished(started, "test_export")
    export = run.parent / "export" / str(STEP)
    assert (export / "saved_model.pb").is_file(), result.stdout
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_EXPORT, str(export), str(FIXTURE / f"ckpt-{STEP}")],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert loaded.returncode == 0, loaded.stderr
    report = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert "decompose" in report["signatures"]
    n, s, k = 2, IMAGE_SIZE, NUM_SLOTS
    assert report["shapes"] == {
        "reconstruction": [n, s, s, 3], "masks": [n, k, s, s],
        "components": [n, k, s, s, 3], "segmentation": [n, s, s],
        "z_mask": [n, k, MASK_LATENT], "z_comp": [n, k, COMP_LATENT]}
    assert report["finite"]
    assert report["mask_sum_error"] < 1e-4
    # Every exported weight is bit for bit one of the fixture's: the model was restored.
    assert report["exported_weights"] > 100  # 147 at 82c4d2f
    assert report["not_from_checkpoint"] == []


def test_visualise(started):
    run, _ = finished(started, "test_visualise")
    png = run.parent / "d.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 1000


def test_resume(started):
    run, result = finished(started, "test_resume")
    output = result.stdout + result.stderr
    assert re.search(rf"resum\w*.*ckpt-{STEP}\b.*\bstep {STEP}\b", output, re.I | re.M), \
        output
    assert (run / f"ckpt-{STEP + 2}.index").is_file(), sorted(os.listdir(run))
    state = (run / "checkpoint").read_text()
    assert f'model_checkpoint_path: "ckpt-{STEP + 2}"' in state
    assert f"step {STEP + 2}" in result.stdout
