"""genesis_tf.run_safety on real checkpoints damaged the ways issue 30 found: the newest
readable checkpoint, a rebuilt state file, one trainer per run directory, orphans and
full disks. Fresh processes where the issue asks for them."""
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import tensorflow as tf

from genesis_tf import run_lock, run_safety
from genesis_tf.errors import UserError
from genesis_tf.run_safety import DamagedCheckpointError, NoSpaceError, RunLock, RunLockedError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE_RUN = os.path.join(ROOT, "tests", "fixtures", "run_before_refactor")
STEPS = (100, 200, 300)
DATA = ".data-00000-of-00001"


def _variables():
    """A few variables of a training state (64 KB of floats: room to damage 4 KB)."""
    return {"step": tf.Variable(0, dtype=tf.int64),
            "weights": tf.Variable(tf.zeros([4, 4096])),
            "bias": tf.Variable(tf.zeros([16]))}


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A run directory with ckpt-100, ckpt-200, ckpt-300 saved by a CheckpointManager."""
    folder = str(tmp_path_factory.mktemp("saved") / "run")
    variables = _variables()
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**variables), folder, 3)
    for step in STEPS:
        variables["step"].assign(step)
        variables["weights"].assign(tf.fill([4, 4096], float(step)))
        manager.save(checkpoint_number=step)
    return folder


@pytest.fixture
def run_dir(saved_run, tmp_path):
    folder = str(tmp_path / "run")
    shutil.copytree(saved_run, folder)
    return folder


def damage(folder, kind, step=300):
    """Damages ckpt-<step> of folder as issue 30 did."""
    prefix = os.path.join(folder, f"ckpt-{step}")
    if kind == "missing":
        for name in (prefix + ".index", prefix + DATA):
            os.remove(name)
    elif kind == "no_data":
        os.remove(prefix + DATA)
    elif kind == "truncated":
        os.truncate(prefix + DATA, os.path.getsize(prefix + DATA) // 2)
    elif kind == "overwritten":
        with open(prefix + DATA, "r+b") as f:
            f.seek(20000)
            f.write(b"\xa5" * 4096)
    elif kind == "truncated_index":
        os.truncate(prefix + ".index", os.path.getsize(prefix + ".index") // 2)
    elif kind == "garbled_state":
        with open(os.path.join(folder, "checkpoint"), "wb") as f:
            f.write(b"model_checkpoint_path: \x00\xff{{ garbage")
    elif kind == "no_state":
        os.remove(os.path.join(folder, "checkpoint"))


def listing(folder):
    return sorted(os.listdir(folder))


REASONS = {"no_data": "data file missing",
           "truncated": "data file truncated",
           "overwritten": "checksum mismatch in the data file",
           "truncated_index": "index file damaged (not an sstable)"}


def test_checkpoints_are_listed_from_the_files_newest_first(run_dir):
    damage(run_dir, "no_state")
    assert run_safety.list_checkpoints(run_dir) == [
        (step, os.path.join(run_dir, f"ckpt-{step}")) for step in reversed(STEPS)]
    assert tf.train.latest_checkpoint(run_dir) is None  # what TensorFlow alone sees


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_a_damaged_newest_checkpoint_is_skipped_with_its_reason(run_dir, kind):
    damage(run_dir, kind)
    before = listing(run_dir)
    path, skipped = run_safety.latest_readable_checkpoint(run_dir)
    assert path == os.path.join(run_dir, "ckpt-200")
    assert skipped == [(os.path.join(run_dir, "ckpt-300"), REASONS[kind])]
    assert listing(run_dir) == before


def test_a_missing_newest_checkpoint_is_not_even_listed(run_dir):
    damage(run_dir, "missing")
    assert run_safety.latest_readable_checkpoint(run_dir) == (
        os.path.join(run_dir, "ckpt-200"), [])


def test_an_intact_run_reads_its_newest_checkpoint(run_dir):
    assert run_safety.latest_readable_checkpoint(run_dir) == (
        os.path.join(run_dir, "ckpt-300"), [])
    assert run_safety.checkpoint_problem(os.path.join(run_dir, "ckpt-100")) is None


@pytest.mark.parametrize("kind", ["garbled_state", "no_state"])
def test_a_garbled_or_missing_state_file_is_rebuilt_from_the_files(run_dir, kind):
    damage(run_dir, kind)
    reports = []
    newest, skipped = run_safety.repair_checkpoint_state(run_dir, report=reports.append)
    assert (newest, skipped) == (os.path.join(run_dir, "ckpt-300"), [])
    state = run_safety.read_checkpoint_state(run_dir)
    assert state.model_checkpoint_path == "ckpt-300"
    assert list(state.all_model_checkpoint_paths) == ["ckpt-100", "ckpt-200", "ckpt-300"]
    assert reports == [f"rebuilt {run_dir}/checkpoint from the checkpoints present "
                       "(ckpt-100, ckpt-200, ckpt-300)"]
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**_variables()), run_dir, 3)
    assert manager.latest_checkpoint == os.path.join(run_dir, "ckpt-300")


def test_an_intact_state_file_is_left_alone(run_dir):
    path = os.path.join(run_dir, "checkpoint")
    with open(path, "rb") as f:
        before = f.read()
    reports = []
    assert run_safety.repair_checkpoint_state(run_dir, report=reports.append) == (
        os.path.join(run_dir, "ckpt-300"), [])
    with open(path, "rb") as f:
        assert f.read() == before
    assert reports == []


def test_rotation_after_a_repair_never_deletes_a_good_checkpoint(run_dir):
    """The state file names the damaged ckpt-300; without the repair TensorFlow would
    restore it (and fail), or with it missing, start at 0 and rotate 100 and 200 away."""
    damage(run_dir, "truncated")
    reports = []
    run_safety.repair_checkpoint_state(run_dir, report=reports.append)
    assert reports[0] == ("skipped damaged checkpoint(s) ckpt-300 (data file truncated); "
                          "resuming from ckpt-200")
    variables = _variables()
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**variables), run_dir, 3)
    assert manager.restore_or_initialize() == os.path.join(run_dir, "ckpt-200")
    assert int(variables["step"].numpy()) == 200
    manager.save(checkpoint_number=210)
    assert listing(run_dir) == sorted(
        ["checkpoint"] + [f"ckpt-{s}{ext}" for s in (100, 200, 210, 300)
                          for ext in (".index", DATA)])
    manager.save(checkpoint_number=220)  # rotates the oldest readable one, 100, only
    assert not os.path.exists(os.path.join(run_dir, "ckpt-100.index"))
    assert os.path.exists(os.path.join(run_dir, "ckpt-200.index"))


RESUME = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    from genesis_tf import run_safety
    results = {}
    for folder in sys.argv[1:]:
        step = tf.Variable(0, dtype=tf.int64)
        checkpoint = tf.train.Checkpoint(step=step, weights=tf.Variable(tf.zeros([4, 4096])),
                                         bias=tf.Variable(tf.zeros([16])))
        run_safety.repair_checkpoint_state(folder)
        # Room for one more: any file gone afterwards was deleted by the resume itself.
        manager = tf.train.CheckpointManager(checkpoint, folder, max_to_keep=4)
        manager.restore_or_initialize()
        results[folder] = int(step.numpy())
        step.assign_add(10)
        run_safety.save_checkpoint(manager, int(step.numpy()))
    print(json.dumps(results))
""")


def test_resume_in_a_fresh_process_lands_on_the_previous_step_and_deletes_nothing(
        saved_run, tmp_path):
    folders = {}
    for kind in ("missing", "truncated", "overwritten", "garbled_state"):
        folders[kind] = str(tmp_path / kind)
        shutil.copytree(saved_run, folders[kind])
        damage(folders[kind], kind)
    before = {kind: set(listing(folder)) for kind, folder in folders.items()}
    done = subprocess.run([sys.executable, "-c", RESUME, *folders.values()], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout.strip().splitlines()[-1])
    assert steps == {folder: (300 if kind == "garbled_state" else 200)
                     for kind, folder in folders.items()}
    for kind, folder in folders.items():
        saved = 310 if kind == "garbled_state" else 210
        assert set(listing(folder)) == before[kind] | {f"ckpt-{saved}.index",
                                                       f"ckpt-{saved}{DATA}"}
    assert "skipped damaged checkpoint(s) ckpt-300 (checksum mismatch in the data file)" \
        in done.stderr


def test_an_explicit_damaged_checkpoint_is_one_line_naming_the_file(run_dir):
    damage(run_dir, "truncated")
    with pytest.raises(DamagedCheckpointError) as raised:
        run_safety.checked_checkpoint(os.path.join(run_dir, "ckpt-300"), run_dir)
    assert str(raised.value) == (
        f"checkpoint {run_dir}/ckpt-300 is damaged (data file truncated); the newest "
        f"readable one is ckpt-200: pass --checkpoint={run_dir}/ckpt-200 or delete the "
        "damaged files")
    assert isinstance(raised.value, UserError)


def test_an_explicit_checkpoint_that_does_not_exist_is_named(run_dir):
    with pytest.raises(DamagedCheckpointError, match=(
            f"^checkpoint {run_dir}/ckpt-7 cannot be found; the newest readable one is "
            f"ckpt-300: pass --checkpoint={run_dir}/ckpt-300$")):  # nothing to delete
        run_safety.checked_checkpoint(os.path.join(run_dir, "ckpt-7"), run_dir)


def test_a_run_whose_every_checkpoint_is_damaged_is_one_line(run_dir):
    for step in STEPS:
        damage(run_dir, "overwritten", step)
    with pytest.raises(DamagedCheckpointError) as raised:
        run_safety.resolve_checkpoint(run_dir)
    assert str(raised.value) == (
        f"no readable checkpoint in {run_dir}: ckpt-300 (checksum mismatch in the data "
        "file), ckpt-200 (checksum mismatch in the data file), ckpt-100 (checksum "
        "mismatch in the data file); restore the files from a copy, or delete them and "
        "train again")


@pytest.mark.parametrize("kind", ["truncated", "overwritten", "truncated_index"])
def test_a_restore_of_a_file_damaged_after_its_check_is_one_line(run_dir, kind):
    path = os.path.join(run_dir, "ckpt-300")
    damage(run_dir, kind)
    with pytest.raises(DamagedCheckpointError) as raised:
        with run_safety.reading_checkpoint(path, run_dir):
            tf.train.Checkpoint(**_variables()).restore(path)
    assert str(raised.value) == (
        f"checkpoint {path} is damaged ({REASONS[kind]}); the newest readable one is "
        f"ckpt-200: pass --checkpoint={run_dir}/ckpt-200 or delete the damaged files")
    with pytest.raises(ValueError, match="other"):  # anything else passes unchanged
        with run_safety.reading_checkpoint(path, run_dir):
            raise ValueError("other")


def test_prepare_resume_cleans_orphans_and_repairs_the_state_in_one_call(run_dir):
    damage(run_dir, "missing")  # the state file still names ckpt-300
    _write(os.path.join(run_dir, "ckpt-300_temp", "part-00000-of-00001.index"), 2_500_000)
    reports = []
    assert run_safety.prepare_resume(run_dir, report=reports.append) == (
        os.path.join(run_dir, "ckpt-200"), [])
    assert reports == ["removed 1 leftover(s) of interrupted saves (2.5 MB)",
                       f"rebuilt {run_dir}/checkpoint from the checkpoints present "
                       "(ckpt-100, ckpt-200)"]
    assert tf.train.latest_checkpoint(run_dir) == os.path.join(run_dir, "ckpt-200")


def test_prepare_resume_refuses_a_run_whose_every_checkpoint_is_damaged(run_dir):
    for step in STEPS:
        damage(run_dir, "truncated", step)
    before = listing(run_dir)
    with pytest.raises(DamagedCheckpointError, match=(
            f"^no readable checkpoint in {run_dir}: ckpt-300 \\(data file truncated\\), "
            ".*; restore the files from a copy, or delete them to train from the start$")):
        run_safety.prepare_resume(run_dir, report=pytest.fail)
    assert listing(run_dir) == before


def test_a_state_file_naming_only_deleted_checkpoints_is_removed(run_dir):
    for step in STEPS:
        damage(run_dir, "missing", step)
    reports = []
    assert run_safety.prepare_resume(run_dir, report=reports.append) == (None, [])
    assert reports == [f"removed {run_dir}/checkpoint: it names checkpoints that are not "
                       "there; starting without one"]
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**_variables()), run_dir, 3)
    assert manager.restore_or_initialize() is None


RESTORE = textwrap.dedent("""
    import sys
    from genesis_tf import runs
    from genesis_tf.errors import UserError
    model, path, state = runs.restore_with_state(sys.argv[1])
    print("restored", path, state["step"], len(model.variables))
    try:
        runs.restore(sys.argv[1], checkpoint=sys.argv[2])
    except UserError as error:
        print("refused", type(error).__name__, error)
""")


def test_restore_falls_back_past_a_damaged_checkpoint_in_a_fresh_process(tmp_path):
    """The tools' reload (evaluate, visualise, export) on a real run: a newer ckpt-5 whose
    data file is truncated is skipped with one warning; named explicitly, it is refused."""
    folder = str(tmp_path / "run")
    shutil.copytree(FIXTURE_RUN, folder)
    for ext in (".index", DATA):
        shutil.copy(os.path.join(folder, "ckpt-4" + ext), os.path.join(folder, "ckpt-5" + ext))
    tf.train.CheckpointManager(tf.train.Checkpoint(), folder, 5)  # reads the state file
    damage(folder, "truncated", step=5)
    with open(os.path.join(folder, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "ckpt-5"\nall_model_checkpoint_paths: "ckpt-4"\n'
                'all_model_checkpoint_paths: "ckpt-5"\n')
    done = subprocess.run([sys.executable, "-c", RESTORE, folder, folder + "/ckpt-5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(f"restored {folder}/ckpt-4 4 ")
    assert lines[1] == (
        f"refused DamagedCheckpointError checkpoint {folder}/ckpt-5 is damaged (data file "
        f"truncated); the newest readable one is ckpt-4: pass --checkpoint={folder}/ckpt-4 "
        "or delete the damaged files")
    assert ("warning: skipped damaged checkpoint(s) ckpt-5 (data file truncated); using "
            "ckpt-4") in done.stderr.splitlines()
    assert "Traceback" not in done.stderr


# --- one writer per run directory -------------------------------------------------------

HOLD = textwrap.dedent("""
    import sys
    from genesis_tf.run_lock import RunLock  # no TensorFlow: starts in a blink
    with RunLock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()  # holds the lock until the test says so
    print("released", flush=True)
""")


def _holder(folder):
    process = subprocess.Popen([sys.executable, "-c", HOLD, folder], cwd=ROOT, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": ROOT,
                                    "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_trainer_is_refused_while_the_first_runs_and_admitted_after(tmp_path):
    folder = str(tmp_path)
    first = _holder(folder)
    try:
        with pytest.raises(RunLockedError) as raised:
            RunLock(folder).acquire()
        message = str(raised.value)
        assert message.startswith(
            f"{folder} is in use by another trainer, PID {first.pid} on "
            f"{socket.gethostname()} (since 20")
        assert message.endswith("; wait for it to finish, use another --model_dir, or pass "
                                "--force if it is not running")
        assert "\n" not in message
    finally:
        first.communicate("\n", timeout=30)
    assert first.returncode == 0
    assert not os.path.exists(os.path.join(folder, run_safety.LOCK_FILE))
    reports = []
    with RunLock(folder, report=reports.append):
        with open(os.path.join(folder, run_safety.LOCK_FILE)) as f:
            assert json.load(f)["pid"] == os.getpid()
    assert reports == []
    assert os.listdir(folder) == []


def test_force_takes_over_a_live_trainers_lock(tmp_path):
    folder = str(tmp_path)
    first = _holder(folder)
    try:
        reports = []
        with RunLock(folder, force=True, report=reports.append):
            assert reports[0].startswith(f"took over the lock of PID {first.pid} on ")
            first.communicate("\n", timeout=30)  # the first one's exit keeps our lock
            with open(os.path.join(folder, run_safety.LOCK_FILE)) as f:
                assert json.load(f)["pid"] == os.getpid()
    finally:
        if first.poll() is None:
            first.kill()


def _dead_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_stale_lock_is_reported_and_taken_over(tmp_path):
    folder = str(tmp_path)
    stale = {"host": socket.gethostname(), "pid": _dead_pid(), "since": time.time() - 60,
             "token": "old"}
    with open(os.path.join(folder, run_safety.LOCK_FILE), "w") as f:
        json.dump(stale, f)
    reports = []
    with RunLock(folder, report=reports.append):
        pass
    assert reports == [f"took over the stale lock of PID {stale['pid']} on "
                       f"{socket.gethostname()} (since "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(stale['since']))})"
                       f" on {folder}"]
    assert os.listdir(folder) == []


def test_a_lock_of_another_host_or_a_reused_pid(tmp_path):
    """Another host's lock is never judged stale; this host's PID reused by another
    process (a container restarted) is."""
    folder = str(tmp_path)
    path = os.path.join(folder, run_safety.LOCK_FILE)
    with open(path, "w") as f:
        json.dump({"host": "elsewhere", "pid": _dead_pid(), "since": 0}, f)
    with pytest.raises(RunLockedError, match="in use by another trainer, PID .* on elsewhere"):
        RunLock(folder).acquire()
    with open(path, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": 0,
                   "process_start": run_lock._process_start(os.getpid()) + 1}, f)
    lock = RunLock(folder, report=lambda _: None)
    lock.acquire()
    lock.release()
    assert os.listdir(folder) == []


# --- orphans and full disks -------------------------------------------------------------

def _write(path, size):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x" * size)


def test_clean_orphans_removes_what_interrupted_saves_leave(run_dir):
    temp = os.path.join(run_dir, "ckpt-400_temp")
    _write(os.path.join(temp, "part-00000-of-00001.data-00000-of-00001.tempstate123"), 3000)
    _write(os.path.join(temp, "part-00000-of-00001.index"), 100)
    _write(os.path.join(run_dir, "checkpoint.tmp" + "0123456789abcdef" * 2), 50)
    _write(os.path.join(run_dir, "results.json.1a2b3c4d.partial"), 7)
    os.utime(os.path.join(run_dir, "results.json.1a2b3c4d.partial"), (0, 0))
    _write(os.path.join(run_dir, "figure.png.9f8e7d6c.partial"), 11)  # being written now
    _write(os.path.join(run_dir, "config_history", "350.gin"), 0)
    _write(os.path.join(run_dir, "config_history", "200.gin"), 20)
    kept = set(listing(run_dir)) - {"ckpt-400_temp", "results.json.1a2b3c4d.partial",
                                    "checkpoint.tmp" + "0123456789abcdef" * 2}
    assert run_safety.clean_orphans(run_dir) == (4, 3000 + 100 + 50 + 7)
    assert set(listing(run_dir)) == kept
    assert os.listdir(os.path.join(run_dir, "config_history")) == ["200.gin"]
    assert run_safety.describe_freed(4, 3157) == (
        "removed 4 leftover(s) of interrupted saves (0.0 MB)")
    assert run_safety.latest_readable_checkpoint(run_dir)[0].endswith("ckpt-300")


@pytest.mark.parametrize("error", [
    tf.errors.ResourceExhaustedError(None, None, "ckpt-400_temp/part-00000-of-00001.data"
                                     "-00000-of-00001.tempstate1; No space left on device"),
    OSError(errno.ENOSPC, "No space left on device")])
def test_a_save_into_a_full_disk_is_one_line_and_leaves_no_orphan(run_dir, monkeypatch,
                                                                   error):
    """A patched writer fails as TF 2.21 does on a full disk, after writing part of the
    temporary folder (and, for the OSError, part of the merged files)."""
    checkpoint = tf.train.Checkpoint(**_variables())
    manager = tf.train.CheckpointManager(checkpoint, run_dir, 3)
    before = listing(run_dir)

    def full_disk(prefix, options=None):
        _write(prefix + "_temp/part-00000-of-00001.data-00000-of-00001.tempstate1", 5000)
        if isinstance(error, OSError):
            _write(prefix + ".index", 10)
        raise error

    monkeypatch.setattr(checkpoint, "_write", full_disk)
    with pytest.raises(NoSpaceError) as raised:
        run_safety.save_checkpoint(manager, 400)
    assert str(raised.value) == (
        f"no space left on {run_dir} while saving ckpt-400; the previous checkpoint "
        "ckpt-300 is intact; free space and rerun to resume")
    assert listing(run_dir) == before
    assert run_safety.latest_readable_checkpoint(run_dir) == (
        os.path.join(run_dir, "ckpt-300"), [])


def test_other_save_errors_pass_unchanged(run_dir, monkeypatch):
    checkpoint = tf.train.Checkpoint(**_variables())
    manager = tf.train.CheckpointManager(checkpoint, run_dir, 3)

    def broken(prefix, options=None):
        raise tf.errors.PermissionDeniedError(None, None, "read-only file system")

    monkeypatch.setattr(checkpoint, "_write", broken)
    with pytest.raises(tf.errors.PermissionDeniedError):
        run_safety.save_checkpoint(manager, 400)


FULL_DISK = textwrap.dedent("""
    import os, sys
    import tensorflow as tf
    from genesis_tf import cli, run_safety

    def main(argv):
        folder = argv[1]
        step = tf.Variable(0, dtype=tf.int64)
        checkpoint = tf.train.Checkpoint(step=step, weights=tf.Variable(tf.ones([600, 1000])))
        with run_safety.RunLock(folder):
            run_safety.repair_checkpoint_state(folder)
            manager = tf.train.CheckpointManager(checkpoint, folder, max_to_keep=3)
            restored = manager.restore_or_initialize()
            print("resumed at", int(step.numpy()), restored, flush=True)
            disk = os.statvfs(folder)  # leaves 1 MB free: the 2.4 MB save cannot fit
            with open(os.path.join(folder, "filler"), "wb") as f:
                f.write(b"x" * (disk.f_bavail * disk.f_frsize - 2**20))
            run_safety.save_checkpoint(manager, int(step.numpy()) + 1)

    cli.run_main(main)
""")


def _state(folder):
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(step=step, weights=tf.Variable(tf.ones([600, 1000])))
    return step, tf.train.CheckpointManager(checkpoint, folder, max_to_keep=3)


def test_a_full_disk_in_a_fresh_process_then_the_resume_after_freeing_space(tmp_path):
    """A real full disk: a 6 MB tmpfs (needs root; skipped elsewhere)."""
    disk = str(tmp_path / "disk")
    os.makedirs(disk)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", disk],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root)")
    try:
        folder = os.path.join(disk, "run")
        step, manager = _state(folder)
        step.assign(1)
        manager.save(checkpoint_number=1)
        full = subprocess.run([sys.executable, "-c", FULL_DISK, folder], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True,
                              text=True, timeout=120)
        assert full.returncode == 2, full.stderr
        assert full.stdout == f"resumed at 1 {folder}/ckpt-1\n"
        assert full.stderr.strip().splitlines()[-1] == (
            f"error: no space left on {folder} while saving ckpt-2; the previous "
            "checkpoint ckpt-1 is intact; free space and rerun to resume")
        assert "Traceback" not in full.stderr
        assert listing(folder) == ["checkpoint", "ckpt-1" + DATA, "ckpt-1.index", "filler"]
        os.remove(os.path.join(folder, "filler"))
        step, manager = _state(folder)
        assert manager.restore_or_initialize() == os.path.join(folder, "ckpt-1")
        assert run_safety.save_checkpoint(manager, 2) == os.path.join(folder, "ckpt-2")
        assert run_safety.latest_readable_checkpoint(folder)[0].endswith("ckpt-2")
    finally:
        subprocess.run(["umount", disk], check=False)
