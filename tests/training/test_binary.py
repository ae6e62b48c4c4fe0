"""The absl binary: errors with exit codes, resumption after SIGKILL, two workers."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from training_helpers import GIN_DIR, ROOT, TINY, run_binary

SMOKE = f"--gin_file={GIN_DIR / 'smoke.gin'}"


def bindings(*extra):
    return [f"--gin_bindings={b}" for b in (*TINY, *extra)]


def test_unknown_gin_binding_is_a_clear_error(tmp_path):
    result = run_binary("genesis_tf.train", [SMOKE, f"--model_dir={tmp_path}",
                                             "--gin_bindings=train.bogus_option = 1"])
    assert result.returncode == 2
    assert "bad gin configuration" in result.stderr and "bogus_option" in result.stderr


def test_missing_gin_file_is_a_clear_error(tmp_path):
    result = run_binary("genesis_tf.train", ["--gin_file=gin_configs/nope.gin",
                                             f"--model_dir={tmp_path}"])
    assert result.returncode == 2 and "nope.gin" in result.stderr


def test_unprepared_dataset_names_the_build_command(tmp_path):
    data_dir = tmp_path / "empty_data"
    result = run_binary("genesis_tf.train", [
        SMOKE, f"--model_dir={tmp_path / 'model'}",
        *bindings("train.dataset = 'multi_dsprites/offline_colored'",
                  f"train.data_dir = '{data_dir}'")])
    assert result.returncode == 2, result.stderr[-2000:]
    assert ("python -m genesis_tf.build_dataset build tfds_builders/multi_dsprites "
            f"--config=offline_colored --data_dir={data_dir}") in result.stderr


def test_checkpoint_of_another_model_is_refused(tmp_path):
    first = run_binary("genesis_tf.train", [SMOKE, f"--model_dir={tmp_path}",
                                            *bindings("train.num_steps = 1")])
    assert first.returncode == 0, first.stderr[-2000:]
    other = run_binary("genesis_tf.train", [
        SMOKE, f"--model_dir={tmp_path}",
        *bindings("train.num_steps = 2", "train.model = @GenesisS", "GenesisS.num_slots = 3")])
    assert other.returncode == 2, other.stderr[-2000:]
    assert "holds a run of another model (class 'Genesis' -> 'GenesisS'" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1, other.stderr


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    args = [SMOKE, f"--model_dir={tmp_path}", *bindings("train.num_steps = 100000")]
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
    import tensorflow as tf

    saved = int(tf.train.latest_checkpoint(str(tmp_path)).rsplit("-", 1)[1])
    resumed = run_binary("genesis_tf.train", [SMOKE, f"--model_dir={tmp_path}",
                                              *bindings(f"train.num_steps = {saved + 2}")])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {saved}." in resumed.stdout
    assert f"Finished at step {saved + 2}" in resumed.stdout


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_together_over_loopback(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    args = [SMOKE, f"--model_dir={tmp_path}", *bindings("train.num_steps = 2")]
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
    for p, (out, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "Finished at step 2" in out
    # The chief (worker 0) wrote the checkpoint; worker 1's scratch copy is gone.
    assert (tmp_path / "ckpt-2.index").exists()
    assert not list(tmp_path.glob("worker_tmp_*"))


def _start(tmp_path, *extra):
    args = [SMOKE, f"--model_dir={tmp_path}", *bindings("train.num_steps = 100000", *extra)]
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the binary's own default applies
    return subprocess.Popen([sys.executable, "-m", "genesis_tf.train", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGINT, 130),
                                                      (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_save_a_checkpoint_and_say_where(tmp_path, signal_number,
                                                            exit_code):
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
    assert process.returncode == exit_code, err[-2000:]
    saved = tf_latest(tmp_path)
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


@pytest.mark.parametrize("args, message", [
    (["--gin_bindings=Genesis.num_slot = 4"], "num_slot"),
    (["--gin_bindings=train.num_steps = = 3"], "bad gin configuration"),
    (["--gin_bindings=train.dataset = 'no_such_data'"], "unknown dataset 'no_such_data'"),
    (["--gin_bindings=train.dataset = 'multi_dsprites/bogus'"], "configs ["),
])
def test_configuration_mistakes_are_one_line_and_leave_nothing_behind(tmp_path, args, message):
    model_dir = tmp_path / "run"
    result = run_binary("genesis_tf.train", [SMOKE, f"--model_dir={model_dir}",
                                             *bindings("train.num_steps = 1"), *args])
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not model_dir.exists()


def test_model_dir_that_is_a_file_and_help(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = run_binary("genesis_tf.train", [SMOKE, f"--model_dir={a_file}"])
    assert result.returncode == 2 and "is a file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    help_result = run_binary("genesis_tf.train", ["--help"])
    assert help_result.returncode == 0, help_result.stderr
    assert "--gin_file" in help_result.stdout and "--model_dir" in help_result.stdout


def test_resuming_with_another_model_shape_is_refused_and_safe_changes_are_recorded(tmp_path):
    first = run_binary("genesis_tf.train", [SMOKE, f"--model_dir={tmp_path}",
                                            *bindings("train.num_steps = 1")])
    assert first.returncode == 0, first.stderr[-2000:]
    config = (tmp_path / "operative_config.gin").read_text()
    other = run_binary("genesis_tf.train", [SMOKE, f"--model_dir={tmp_path}",
                                            *bindings("train.num_steps = 2", "NUM_SLOTS = 5")])
    assert other.returncode == 2, other.stderr[-2000:]
    assert "num_slots 3 -> 5" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1, other.stderr
    assert (tmp_path / "operative_config.gin").read_text() == config  # not overwritten
    longer = run_binary("genesis_tf.train", [SMOKE, f"--model_dir={tmp_path}",
                                             *bindings("train.num_steps = 2")])
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert "Resuming with changed settings" in longer.stdout and "num_steps" in longer.stdout
    assert "Finished at step 2" in longer.stdout
    assert (tmp_path / "config_history" / "1.gin").read_text() == config
    assert "train.num_steps = 2" in (tmp_path / "operative_config.gin").read_text()


def test_a_corrupt_record_names_the_file_and_the_rebuild_command(tmp_path):
    data_dir = tmp_path / "data"
    build = run_binary("genesis_tf.build_dataset", [
        "build", "tfds_builders/multi_dsprites", "--config=offline_colored",
        f"--data_dir={data_dir}", "--max_examples_per_split=64"])
    assert build.returncode == 0, build.stderr[-2000:]
    train_file = sorted(data_dir.rglob("*-train.tfrecord*"))[0]
    raw = bytearray(train_file.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\xff" * 64  # damage a record's payload
    train_file.write_bytes(bytes(raw))
    result = run_binary("genesis_tf.train", [
        SMOKE, f"--model_dir={tmp_path / 'run'}",
        *bindings("train.dataset = 'multi_dsprites/offline_colored'",
                  f"train.data_dir = '{data_dir}'", "train.num_steps = 20",
                  "train.steps_per_loop = 10")])
    assert result.returncode == 2, result.stderr[-3000:]
    assert str(train_file) in result.stderr and "damaged record" in result.stderr
    assert ("python -m genesis_tf.build_dataset build tfds_builders/multi_dsprites "
            f"--config=offline_colored --data_dir={data_dir} --overwrite") in result.stderr
    assert "Traceback" not in result.stderr
