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
    assert "does not fit the configured model" in other.stderr


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
