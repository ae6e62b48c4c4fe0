"""python -m genesis_tf.train on run directories damaged the ways issue 30 found, in fresh
processes: a missing, truncated or overwritten newest checkpoint, a garbled `checkpoint`
state file, a checkpoint picked by hand, a second trainer, a full disk."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers.training import (
    FAST_MODEL,
    ROOT,
    run_binary,
    selected_tests,
    start_binary,
)

DATA = ".data-00000-of-00001"
TINY_RUN = [  # what is under test is the run directory: a fast model, a checkpoint a step
    "IMAGE_SIZE = 32", *FAST_MODEL, "train.dataset = 'synthetic'", "train.batch_size = 2",
    "train.steps_per_loop = 1",
    "train.checkpoint_every = 1", "train.keep_checkpoints = 3", "train.seed = 3",
    "train.summary_every = 0", "train.image_summary_every = 0",
]
DAMAGE_CASES = {  # case -> (damage to the copy of the 3-step run, steps, resumed from)
    "missing": (["missing"], 3, 2),
    "truncated_and_garbled_state": (["truncated", "garbled_state"], 3, 2),
    "overwritten": (["overwritten"], 4, 2),
}


def _args(model_dir, steps, *flags):
    """genesis_tf.train's arguments for a TINY_RUN of `steps` steps into model_dir."""
    return ["--gin_file=smoke.gin", f"--model_dir={model_dir}", *flags,
            *(f"--gin_bindings={b}" for b in [*TINY_RUN, f"train.num_steps = {steps}"])]


def _train(model_dir, steps, *flags, background=False):
    return (start_binary if background else run_binary)(
        "genesis_tf.train", _args(model_dir, steps, *flags))


def _damage(folder, kind, step=3):
    prefix = os.path.join(folder, f"ckpt-{step}")
    if kind == "missing":  # the user deleted the damaged newest checkpoint
        os.remove(prefix + ".index")
        os.remove(prefix + DATA)
    elif kind == "truncated":
        os.truncate(prefix + DATA, os.path.getsize(prefix + DATA) // 2)
    elif kind == "overwritten":
        with open(prefix + DATA, "r+b") as f:
            f.seek(os.path.getsize(prefix + DATA) // 2)
            f.write(b"\xa5" * 4096)
    elif kind == "garbled_state":
        with open(os.path.join(folder, "checkpoint"), "wb") as f:
            f.write(b"model_checkpoint_path: \x00\xff{{ not a state file")


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A 3-step run with ckpt-1, ckpt-2 and ckpt-3."""
    folder = tmp_path_factory.mktemp("resume_safety") / "base"
    done = _train(folder, 3)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


@pytest.fixture(scope="module")
def resumed(base_run, request):
    """Each damaged copy resumed by the binary, all at once: {case: (copy, result)}."""
    wanted = {item.name for item in selected_tests(request)}
    started = {}
    for case, (kinds, steps, _) in DAMAGE_CASES.items():
        if any(case in name for name in wanted):
            copy = base_run.parent / case
            shutil.copytree(base_run, copy)
            for kind in kinds:
                _damage(copy, kind)
            started[case] = (copy, _train(copy, steps, background=True))
    if any("by_hand" in name for name in wanted):
        copy = base_run.parent / "by_hand"
        shutil.copytree(base_run, copy)
        started["by_hand"] = (copy, _train(copy, 2, f"--checkpoint={copy}/ckpt-1",
                                           background=True))
    return {case: (copy, process.result()) for case, (copy, process) in started.items()}


@pytest.mark.parametrize("case", sorted(DAMAGE_CASES))
def test_resume_lands_on_the_newest_readable_checkpoint_and_deletes_nothing(resumed, case):
    copy, result = resumed[case]
    _, steps, step = DAMAGE_CASES[case]
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resumed from {copy}/ckpt-{step} at step {step}." in result.stdout
    assert f"Finished at step {steps}" in result.stdout
    # The good ones are all there (but what keep_checkpoints = 3 rotates out as usual),
    # the damaged one saved again.
    for kept in range(max(1, steps - 2), steps + 1):
        assert os.path.exists(copy / f"ckpt-{kept}.index"), kept
    reasons = {"truncated_and_garbled_state": "ckpt-3 (data file truncated)",
               "overwritten": "ckpt-3 (checksum mismatch in the data file)"}
    if case in reasons:
        assert (f"warning: skipped damaged checkpoint(s) {reasons[case]}; resuming from "
                "ckpt-2") in result.stderr
    if case == "truncated_and_garbled_state":
        assert f"rebuilt {copy}/checkpoint from the checkpoints present" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_checkpoint_chosen_by_hand(resumed):
    copy, result = resumed["by_hand"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resumed from {copy}/ckpt-1 at step 1." in result.stdout
    assert "Finished at step 2" in result.stdout


def test_a_damaged_checkpoint_chosen_by_hand_is_one_line(base_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(base_run, copy)
    _damage(copy, "truncated")
    result = _train(copy, 4, f"--checkpoint={copy}/ckpt-3")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"error: checkpoint {copy}/ckpt-3 is damaged (data file truncated); the newest "
        f"readable one is ckpt-2: pass --checkpoint={copy}/ckpt-2 or delete the damaged "
        "files"]


def test_a_second_trainer_is_refused_while_the_first_runs_and_admitted_after(base_run,
                                                                               tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(base_run, copy)
    first = subprocess.Popen(_command(copy, 100_000), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    try:
        # In its loop (a checkpoint past the copy's), so SIGTERM saves and stops it.
        _wait_for(lambda: (copy / "ckpt-4.index").exists(), first)
        assert (copy / "trainer.lock").exists()
        second = _train(copy, 100_000)
        assert second.returncode == 2, second.stderr[-3000:]
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"error: {copy} is in use by another trainer, PID {first.pid} on ")
        assert lines[0].endswith("--force if it is not running")
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 143, err[-3000:]
    stopped = int(re.search(r"stopped at step (\d+)", err).group(1))
    after = _train(copy, stopped)  # admitted: it takes the lock and resumes (no step left)
    assert after.returncode == 0, after.stderr[-3000:]
    assert f"Resumed from {copy}/ckpt-{stopped} at step {stopped}." in after.stdout
    assert not (copy / "trainer.lock").exists()


def _command(model_dir, steps):
    return [sys.executable, "-m", "genesis_tf.train", *_args(model_dir, steps)]


def _wait_for(condition, process, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the first trainer never reached its loop"
        time.sleep(0.2)


def test_a_full_disk_is_one_line_leaves_no_orphan_and_the_resume_works(base_run, tmp_path):
    """A real full disk: a tmpfs with room for one checkpoint (needs root to mount)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    checkpoint_bytes = sum(p.stat().st_size for p in base_run.glob("ckpt-1.*"))
    size = int(checkpoint_bytes * 1.6) + 2**20  # ckpt-1, the records, not ckpt-2
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (not root)")
    try:
        run = disk / "run"
        run.mkdir()
        for name in ("model.json", "run.json", "operative_config.gin"):
            shutil.copy(base_run / name, run / name)
        for path in base_run.glob("ckpt-1.*"):
            shutil.copy(path, run / path.name)
        (run / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n'
                                        'all_model_checkpoint_paths: "ckpt-1"\n')
        full = _train(run, 2)
        assert full.returncode == 2, full.stderr[-3000:]
        assert full.stderr.strip().splitlines()[-1] == (
            f"error: no space left on {run} while saving ckpt-2; the previous checkpoint "
            "ckpt-1 is intact; free space and rerun to resume")
        assert "Traceback" not in full.stderr
        assert not list(run.glob("ckpt-2*")) and not list(run.glob("*_temp*"))
        subprocess.run(["mount", "-o", f"remount,size={size * 3}", str(disk)], check=True)
        again = _train(run, 2)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"Resumed from {run}/ckpt-1 at step 1." in again.stdout
        assert (run / "ckpt-2.index").exists()
    finally:
        subprocess.run(["umount", str(disk)], check=False)
