"""The absl binary: errors with exit codes, resumption after SIGKILL, two workers.

Each test checks what its `python -m genesis_tf.train` processes did. The processes of all
the selected tests start when the first test runs, two at a time (each is mostly
single-threaded import and tracing, and CI has two cores), and each test waits for its own.
"""
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers.training import (
    FAST_MODEL,
    GIN_DIR,
    ROOT,
    TINY,
    run_binary,
    selected_tests,
)

SMOKE = f"--gin_file={GIN_DIR / 'smoke.gin'}"


def bindings(*extra):
    return [f"--gin_bindings={b}" for b in (*TINY, *extra)]


# -- the processes each test checks, run by `outcomes` below --------------------------------

def _unknown_gin_binding(tmp_path):
    model_dir = tmp_path / "run"
    return model_dir, run_binary("genesis_tf.train", [
        SMOKE, f"--model_dir={model_dir}", "--gin_bindings=train.bogus_option = 1"])


def _renamed_gin_binding(tmp_path):
    model_dir = tmp_path / "run"
    return model_dir, run_binary("genesis_tf.train", [
        "--gin_file=smoke.gin", "--gin_bindings=train.geco_alpha = 0.9",
        f"--model_dir={model_dir}"])


def _missing_gin_file(tmp_path):
    return run_binary("genesis_tf.train", ["--gin_file=gin_configs/nope.gin",
                                           f"--model_dir={tmp_path}"])


def _unprepared_dataset(tmp_path):
    data_dir = tmp_path / "empty_data"
    return data_dir, run_binary("genesis_tf.train", [
        SMOKE, f"--model_dir={tmp_path / 'model'}",
        *bindings("train.dataset = 'multi_dsprites/offline_colored'",
                  f"train.data_dir = '{data_dir}'")])


def _changed_model_runs(tmp_path):
    """A one-step run, resumed with another model class (on a copy), another shape, and
    safely changed settings: the first run serves two tests."""
    runs = {"model_dir": tmp_path,
            "first": run_binary("genesis_tf.train", [
                SMOKE, f"--model_dir={tmp_path}", *bindings(*FAST_MODEL, "train.num_steps = 1")])}
    if runs["first"].returncode:
        return runs
    copy = tmp_path.parent / f"{tmp_path.name}_copy"
    shutil.copytree(tmp_path, copy)
    runs["other_class"] = run_binary("genesis_tf.train", [
        SMOKE, f"--model_dir={copy}",
        *bindings("train.num_steps = 2", "train.model = @DCVAE", "DCVAE.latent_size = 8")])
    runs["config"] = (tmp_path / "operative_config.gin").read_text()
    runs["other_shape"] = run_binary("genesis_tf.train", [
        SMOKE, f"--model_dir={tmp_path}",
        *bindings(*FAST_MODEL, "train.num_steps = 2", "BDVAE.latent_size = 16")])
    runs["config_after_refusal"] = (tmp_path / "operative_config.gin").read_text()
    runs["longer"] = run_binary("genesis_tf.train", [
        SMOKE, f"--model_dir={tmp_path}", *bindings(*FAST_MODEL, "train.num_steps = 2")])
    return runs


def _killed_and_resumed(tmp_path):
    args = [SMOKE, f"--model_dir={tmp_path}",
            *bindings(*FAST_MODEL, "train.num_steps = 100000")]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen([sys.executable, "-m", "genesis_tf.train", *args], cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not list(tmp_path.glob("ckpt-*.index")):
            assert process.poll() is None, "training exited early"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.5)
        time.sleep(1.0)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    saved = int(tf_latest(tmp_path).rsplit("-", 1)[1])
    return saved, run_binary("genesis_tf.train", [
        SMOKE, f"--model_dir={tmp_path}", *bindings(*FAST_MODEL, f"train.num_steps = {saved + 2}")])


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _two_workers(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    args = [SMOKE, f"--model_dir={tmp_path}", *bindings(*FAST_MODEL, "train.num_steps = 2")]
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "genesis_tf.train", *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for p in processes:
            outputs.append(p.communicate(timeout=300))
    finally:
        for p in processes:
            p.kill()
    return tmp_path, [(p.returncode, out, err)
                      for p, (out, err) in zip(processes, outputs, strict=True)]


def _start(tmp_path, *extra):
    args = [SMOKE, f"--model_dir={tmp_path}",
            *bindings(*FAST_MODEL, "train.num_steps = 100000", *extra)]
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the binary's own default applies
    return subprocess.Popen([sys.executable, "-m", "genesis_tf.train", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _signalled(tmp_path, signal_number, exit_code):
    # checkpoint_every is large: the only checkpoint is the one the signal makes.
    process = _start(tmp_path, "train.checkpoint_every = 100000")
    lines = []
    try:
        for line in process.stdout:  # the step lines come after compilation
            lines.append(line)
            if line.startswith("step "):
                break
        assert lines and lines[-1].startswith("step "), "".join(lines)
        # The compile line came before the first step line (tracing takes seconds).
        assert any("Compiling the training step" in line for line in lines[:-1])
        process.send_signal(signal_number)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    return tmp_path, process.returncode, lines, out, err


def _gin_syntax_error(tmp_path):
    model_dir = tmp_path / "run"
    return model_dir, run_binary("genesis_tf.train", [
        SMOKE, f"--model_dir={model_dir}", *bindings("train.num_steps = = 3")])


def _model_dir_that_is_a_file_and_help(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    return (run_binary("genesis_tf.train", [SMOKE, f"--model_dir={a_file}"]),
            run_binary("genesis_tf.train", ["--help"]),
            run_binary("genesis_tf.train", [SMOKE]))


def _corrupt_record(tmp_path):
    data_dir = tmp_path / "data"
    build = run_binary("genesis_tf.build_dataset", [
        "build", "tfds_builders/multi_dsprites", "--config=offline_colored",
        f"--data_dir={data_dir}", "--max_examples_per_split=64"])
    assert build.returncode == 0, build.stderr[-2000:]
    train_file = sorted(data_dir.rglob("*-train.tfrecord*"))[0]
    raw = bytearray(train_file.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\xff" * 64  # damage a record's payload
    train_file.write_bytes(bytes(raw))
    return data_dir, train_file, run_binary("genesis_tf.train", [
        SMOKE, f"--model_dir={tmp_path / 'run'}",
        *bindings(*FAST_MODEL, "train.dataset = 'multi_dsprites/offline_colored'",
                  f"train.data_dir = '{data_dir}'", "train.num_steps = 20",
                  "train.steps_per_loop = 10")])


# test -> (its processes, a rough cost: the costliest start first so none is left alone)
_PROCESSES = {
    "test_two_workers_train_together_over_loopback": (_two_workers, 6),
    "test_checkpoint_of_another_model_is_refused": (_changed_model_runs, 5),
    "test_resuming_with_another_model_shape_is_refused_and_safe_changes_are_recorded": (
        _changed_model_runs, 5),
    "test_a_killed_run_resumes_from_its_last_checkpoint": (_killed_and_resumed, 4),
    "test_a_corrupt_record_names_the_file_and_the_rebuild_command": (_corrupt_record, 3),
    "test_sigint_and_sigterm_save_a_checkpoint_and_say_where": (_signalled, 2),
    "test_unprepared_dataset_names_the_build_command": (_unprepared_dataset, 1),
    "test_unknown_gin_binding_is_a_clear_error": (_unknown_gin_binding, 1),
    "test_missing_gin_file_is_a_clear_error": (_missing_gin_file, 1),
    "test_an_old_binding_name_fails_in_one_line_naming_its_replacement": (
        _renamed_gin_binding, 1),
    "test_a_gin_syntax_error_is_one_line_and_leaves_nothing_behind": (_gin_syntax_error, 1),
    "test_model_dir_that_is_a_file_and_help": (_model_dir_that_is_a_file_and_help, 1),
}


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    """Starts the processes of every selected test of this module: test id -> future."""
    started, futures = {}, {}
    items = sorted((item for item in selected_tests(request) if item.originalname in _PROCESSES),
                   key=lambda item: -_PROCESSES[item.originalname][1])
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for item in items:
            function = _PROCESSES[item.originalname][0]
            params = item.callspec.params if hasattr(item, "callspec") else {}
            key = (function, repr(sorted(params.items())))  # shared processes start once
            if key not in started:
                directory = tmp_path_factory.mktemp(function.__name__.strip("_"))
                started[key] = pool.submit(function, directory, **params)
            futures[item.nodeid] = started[key]
        yield futures
        for future in futures.values():  # e.g. after -x stopped the session early
            future.cancel()


@pytest.fixture
def outcome(request, outcomes):
    """This test's processes: `.result()` waits for them and raises what they raised."""
    return outcomes[request.node.nodeid]


def test_unknown_gin_binding_is_a_clear_error(outcome):
    model_dir, result = outcome.result()
    assert result.returncode == 2, result.stderr[-2000:]
    assert "bad gin configuration" in result.stderr and "bogus_option" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not model_dir.exists()


def test_an_old_binding_name_fails_in_one_line_naming_its_replacement(outcome):
    model_dir, result = outcome.result()
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("train.geco_alpha was renamed: use GECO.alpha")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not model_dir.exists()


def test_missing_gin_file_is_a_clear_error(outcome):
    result = outcome.result()
    assert result.returncode == 2 and "nope.gin" in result.stderr


def test_unprepared_dataset_names_the_build_command(outcome):
    data_dir, result = outcome.result()
    assert result.returncode == 2, result.stderr[-2000:]
    assert ("python -m genesis_tf.build_dataset build tfds_builders/multi_dsprites "
            f"--config=offline_colored --data_dir={data_dir}") in result.stderr


def test_checkpoint_of_another_model_is_refused(outcome):
    runs = outcome.result()
    first = runs["first"]
    assert first.returncode == 0, first.stderr[-2000:]
    other = runs["other_class"]
    assert other.returncode == 2, other.stderr[-2000:]
    assert "holds a run of another model (class 'BDVAE' -> 'DCVAE'" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1, other.stderr


def test_a_killed_run_resumes_from_its_last_checkpoint(outcome):
    saved, resumed = outcome.result()
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {saved}." in resumed.stdout
    assert f"Finished at step {saved + 2}" in resumed.stdout


@pytest.mark.slow
def test_two_workers_train_together_over_loopback(outcome):
    model_dir, workers = outcome.result()
    for returncode, out, err in workers:
        assert returncode == 0, err[-3000:]
        assert "Finished at step 2" in out
    # The chief (worker 0) wrote the checkpoint; worker 1's scratch copy is gone.
    assert (model_dir / "ckpt-2.index").exists()
    assert not list(model_dir.glob("worker_tmp_*"))


@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGINT, 130),
                                                      (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_save_a_checkpoint_and_say_where(outcome, signal_number,
                                                            exit_code):
    model_dir, returncode, lines, out, err = outcome.result()
    assert returncode == exit_code, err[-2000:]
    saved = tf_latest(model_dir)
    assert saved and int(saved.rsplit("-", 1)[1]) >= 1, (out, err)
    name = signal.Signals(signal_number).name
    assert f"Interrupted ({name}: stopped at step" in err and saved in err
    assert "Traceback" not in err
    # The console carried no TensorFlow/TFDS/gin noise.
    everything = "".join(lines) + out + err
    for noise in ("cuInit", "Path not found", "I0000", "E0000", "W0000", "cuda drivers"):
        assert noise not in everything, everything


def tf_latest(path):
    import tensorflow as tf

    return tf.train.latest_checkpoint(str(path))


def test_a_gin_syntax_error_is_one_line_and_leaves_nothing_behind(outcome):
    # The mistakes train() finds (dataset names, settings) are checked in-process by
    # tests/training/test_config_mistakes.py; this is the binary's own parse of gin.
    model_dir, result = outcome.result()
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: bad gin configuration: ")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not model_dir.exists()


def test_model_dir_that_is_a_file_and_help(outcome):
    result, help_result, no_model_dir = outcome.result()
    assert result.returncode == 2 and "is a file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert help_result.returncode == 0, help_result.stderr
    assert "--gin_file" in help_result.stdout and "--model_dir" in help_result.stdout
    # A missing required flag: one line and exit 2, as every user error (absl: 2 lines, 1).
    assert no_model_dir.returncode == 2, no_model_dir.stderr
    assert no_model_dir.stderr.strip() == ("error: --model_dir is required (--help lists "
                                           "the flags)")


def test_resuming_with_another_model_shape_is_refused_and_safe_changes_are_recorded(outcome):
    runs = outcome.result()
    model_dir, first = runs["model_dir"], runs["first"]
    assert first.returncode == 0, first.stderr[-2000:]
    config, other, longer = runs["config"], runs["other_shape"], runs["longer"]
    assert other.returncode == 2, other.stderr[-2000:]
    assert "latent_size 8 -> 16" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1, other.stderr
    assert runs["config_after_refusal"] == config  # not overwritten
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert "Resuming with changed settings" in longer.stdout and "num_steps" in longer.stdout
    assert "Finished at step 2" in longer.stdout
    assert (model_dir / "config_history" / "1.gin").read_text() == config
    assert "train.num_steps = 2" in (model_dir / "operative_config.gin").read_text()


def test_a_corrupt_record_names_the_file_and_the_rebuild_command(outcome):
    data_dir, train_file, result = outcome.result()
    assert result.returncode == 2, result.stderr[-3000:]
    assert str(train_file) in result.stderr and "damaged record" in result.stderr
    assert ("python -m genesis_tf.build_dataset build tfds_builders/multi_dsprites "
            f"--config=offline_colored --data_dir={data_dir} --overwrite") in result.stderr
    assert "Traceback" not in result.stderr
