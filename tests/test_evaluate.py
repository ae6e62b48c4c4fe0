"""python -m genesis_tf.evaluate and python -m genesis_tf.visualise on a tiny trained run,
in fresh processes."""
import json
import pathlib
import shutil
import subprocess

import pytest

from tests.helpers.fid import standin_graph_def
from tests.helpers.training import in_background, parse, run_binary, start_binary

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _evaluate(*args, env=None):
    # Without GENESIS_TF_INCEPTION from the caller's environment unless a test sets it.
    return start_binary("genesis_tf.evaluate", args,
                        env={"GENESIS_TF_INCEPTION": None, **(env or {})})


def _visualise(*args, env=None):
    return start_binary("genesis_tf.visualise", args, env=env)


def _prepare_shapestacks(root):
    import tensorflow_datasets as tfds

    from tfds_builders.shapestacks import shapestacks_dataset_builder as shapestacks

    manual = root / "shapestacks_manual"
    manual.mkdir()
    for archive in (ROOT / "tfds_builders" / "shapestacks" / "dummy_data").glob("*.tar.gz"):
        shutil.copyfile(archive, manual / archive.name)
    data_dir = root / "shapestacks_data"
    shapestacks.Builder(data_dir=str(data_dir)).download_and_prepare(
        download_dir=str(root / "downloads"),
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(manual), compute_stats=tfds.download.ComputeStatsMode.SKIP))
    return data_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 1-step GENESIS run (32x32, K=3, synthetic scenes) and the evaluations of it."""
    import gin

    from genesis_tf.metrics import fid
    from genesis_tf.training import train

    root = tmp_path_factory.mktemp("evaluate")
    run = root / "run"
    gin.clear_config()
    parse(bindings=["train.seed = 1"])
    train(str(run), num_steps=1)
    gin.clear_config()
    inception = root / fid.INCEPTION_FILENAME  # a stand-in in the real file's format
    inception.write_bytes(standin_graph_def().SerializeToString())
    # ShapeStacks from the builder's dummy archives (4 train, 2 test images with labels),
    # evaluated by a copy of the run (its own eval_test_1.json).
    shapestacks_data = _prepare_shapestacks(root)
    shapestacks_run = root / "run_shapestacks"
    shutil.copytree(run, shapestacks_run)
    model_dir = f"--model_dir={run}"
    started = {
        "seg": _evaluate(model_dir, "--metrics=ari,sc", "--num_images=40"),
        "fid": _evaluate(model_dir, "--metrics=fid", "--fid_images=24", "--batch_size=12",
                         "--split=validation", env={"GENESIS_TF_INCEPTION": str(root)}),
        "no_inception": _evaluate(model_dir, "--metrics=fid"),
        "probes": _evaluate(model_dir, "--metrics=probes"),
        "unknown": _evaluate(model_dir, "--metrics=ari,iou"),
        "no_run": _evaluate(f"--model_dir={root / 'nothing'}"),
        "decomposition": _visualise(model_dir, "--what=decomposition", "--num_images=3",
                                    f"--out={root / 'figures' / 'decomposition.png'}"),
        "samples": _visualise(model_dir, "--what=samples", "--num_images=5",
                              f"--out={root / 'figures' / 'samples.png'}"),
        "traversal": _visualise(model_dir, "--what=traversal", "--num_images=4",
                                "--dims=2", f"--out={root / 'figures' / 'traversal.png'}"),
        "no_slot": _visualise(model_dir, "--what=traversal", "--slot=4",
                              f"--out={root / 'figures' / 'nothing.png'}"),
        "shapestacks": _evaluate(f"--model_dir={shapestacks_run}", "--dataset=shapestacks",
                                 f"--data_dir={shapestacks_data}",
                                 "--metrics=ari,sc,probes", "--probe_train_images=4",
                                 "--probe_epochs=2", "--num_images=5"),  # the split has 2
        # A user's environment: TensorFlow's C++ log level as the command sets it (this
        # mistake is found after TensorFlow is imported).
        "no_split": _visualise(f"--model_dir={shapestacks_run}", "--dataset=shapestacks",
                               f"--data_dir={shapestacks_data}", "--what=decomposition",
                               "--split=valid", f"--out={root / 'figures' / 'no.png'}",
                               env={"TF_CPP_MIN_LOG_LEVEL": None}),
        "merged": _in_sequence(_evaluation_copy(run, root / "run_merged"),
                               ["--metrics=ari", "--num_images=8"],
                               ["--metrics=sc", "--num_images=8"]),
        "read_only": _read_only_evaluation(run, root),
    }
    try:
        return run, {name: process.result() for name, process in started.items()}
    finally:
        started["read_only"].close()  # unmounted even when a result failed


def _evaluation_copy(run, copy):
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("eval_*"))
    return copy


class _Sequence:
    """Evaluations of one run, one after the other, in a background thread."""

    def __init__(self, run, arguments):
        self._future = in_background(
            lambda: [run_binary("genesis_tf.evaluate", [f"--model_dir={run}", *args],
                                env={"GENESIS_TF_INCEPTION": None}, timeout=600)
                     for args in arguments])

    def result(self):
        return self._future.result()


def _in_sequence(run, *arguments):
    return _Sequence(run, arguments)


def _read_only_evaluation(run, root):
    """An evaluation of a run whose folder is a read-only bind mount (root can write into
    any folder a chmod protects), or None where this machine cannot mount."""
    source = _evaluation_copy(run, root / "run_read_only_source")
    target = root / "run_read_only"
    target.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(source), str(target)],
                             capture_output=True).returncode == 0
    if not mounted or subprocess.run(["mount", "-o", "remount,ro,bind", str(target)],
                                     capture_output=True).returncode:
        if mounted:
            subprocess.run(["umount", str(target)])
        return _Finished(None)
    sequence = _in_sequence(target, ["--metrics=ari", "--num_images=8"])
    return _Finished(sequence, cleanup=lambda: subprocess.run(["umount", str(target)]))


class _Finished:
    def __init__(self, pending, cleanup=None):
        self._pending, self._cleanup = pending, cleanup

    def result(self):
        if self._pending is None:
            return None
        try:
            return self._pending.result()[0]
        finally:
            self.close()

    def close(self):
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None


def test_segmentation_metrics_are_printed_and_written_with_the_step(runs):
    run, results = runs
    result = results["seg"]
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((run / "eval_test_1.json").read_text())
    assert report["step"] == 1 and report["split"] == "test"
    assert report["dataset"] == "synthetic" and report["num_slots"] == 3
    assert set(report["metrics"]) == {"fg_ari", "ari", "sc", "msc"}
    for value in report["metrics"].values():
        assert value["count"] == 40 and 0.0 <= value["stderr"] < 0.5
        assert -1.0 <= value["mean"] <= 1.0
    for name in ("fg_ari", "ari", "sc", "msc"):
        mean, stderr = (report["metrics"][name][k] for k in ("mean", "stderr"))
        assert f"{mean:.4f} ± {stderr:.4f}" in result.stdout
    assert "(checkpoint step 1)" in result.stdout
    assert f"Written to {run / 'eval_test_1.json'}" in result.stdout
    assert "segmentation: 40/40 images" in result.stderr  # the progress line


def test_fid_of_generated_and_reconstructed_images_with_a_stand_in_network(runs):
    run, results = runs
    result = results["fid"]
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "eval_validation_1.json").read_text())["metrics"]
    assert set(metrics) == {"fid_generated", "fid_reconstructed"}
    for value in metrics.values():
        assert value["count"] == 24 and value["reference_count"] == 24
        assert value["value"] > 0.0
    assert "FID, generated images: 24/24" in result.stderr


@pytest.mark.parametrize("case, message", [
    ("no_inception", "GENESIS_TF_INCEPTION"),
    ("probes", "probes need ShapeStacks labels; synthetic has none"),
    ("unknown", "--metrics=ari,iou: unknown iou; choose from ari, sc, fid, probes"),
    ("no_run", "does not exist; pass the folder a training run wrote"),
    ("no_slot", "--slot=4: the model has 3 slot(s), numbered 1..3"),
    ("no_split", "shapestacks has no split 'valid'; it has test, train, validation (--split)"),
])
def test_mistakes_are_one_line_errors(runs, case, message):
    result = runs[1][case]
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_visualise_writes_labelled_figures_of_the_run(runs):
    from PIL import Image

    from genesis_tf.plotting import figures

    run, results = runs
    figure_dir = run.parent / "figures"
    for what, size in (("decomposition", figures.figure_size(3, 3 + 2 * 3)),
                       ("samples", figures.figure_size(1, 8)),
                       # two dimensions of each of GENESIS's two groups; input + 7 values
                       ("traversal", figures.figure_size(4, 8))):
        result = results[what]
        assert result.returncode == 0, result.stderr[-3000:]
        path = figure_dir / f"{what}.png"
        assert f"Wrote {path}" in result.stdout
        assert Image.open(path).size == size


def test_shapestacks_probes_and_segmentation_from_the_builders_data(runs):
    run, results = runs
    result = results["shapestacks"]
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(
        (run.parent / "run_shapestacks" / "eval_test_1_shapestacks.json").read_text())
    assert report["dataset"] == "shapestacks"
    metrics = report["metrics"]
    assert set(metrics) == {"fg_ari", "ari", "sc", "msc", "probe_stability",
                            "probe_height", "probe_view"}
    for task in ("stability", "height", "view"):
        value = metrics[f"probe_{task}"]
        assert value["count"] == 2 and 0.0 <= value["accuracy"] <= 1.0
    assert "probe features, train: 4/4 images" in result.stderr


def test_a_second_evaluation_keeps_the_metrics_of_the_first(runs):
    """--metrics=ari, then --metrics=sc: one file with both (BUILD.md's sequence)."""
    first, second = runs[1]["merged"]
    for result in (first, second):
        assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((runs[0].parent / "run_merged" / "eval_test_1.json").read_text())
    assert set(report["metrics"]) == {"fg_ari", "ari", "sc", "msc"}
    assert report["metrics"]["ari"]["settings"]["num_images"] == 8
    assert report["metrics"]["ari"]["count"] == 8


def test_the_table_comes_first_and_a_read_only_run_folder_gets_json_on_stdout(runs):
    result = runs[1]["read_only"]
    if result is None:
        pytest.skip("this machine cannot make a read-only bind mount")
    assert result.returncode == 0, result.stderr[-3000:]
    table_at = result.stdout.index("(checkpoint step 1)")
    report = json.loads(result.stdout[result.stdout.index("{", table_at):])
    assert set(report["metrics"]) == {"fg_ari", "ari"} and report["step"] == 1
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "cannot write" in warning[0]
    assert "Read-only file system" in warning[0] and "--output=FILE" in warning[0]


def test_more_images_asked_than_the_split_holds_is_said(runs):
    result = runs[1]["shapestacks"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("warning: --num_images=5, but the test split of shapestacks has only 2 images; "
            "all of them were scored") in result.stderr
