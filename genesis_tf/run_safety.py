"""Keeping a run directory's work safe: the newest checkpoint that reads back whole, a
`checkpoint` state file rebuilt from the files present, one writer per run directory,
orphans of interrupted saves, full disks, and small files written under a temporary name.

    path, skipped = latest_readable_checkpoint("runs/gqn")   # skips damaged ones, says why
    repair_checkpoint_state("runs/gqn")   # before tf.train.CheckpointManager(...) is built
    with RunLock("runs/gqn", force=False):   # refuses a second trainer in one line
        clean_orphans("runs/gqn")          # (count, bytes) freed
        save_checkpoint(manager, step)     # a full disk becomes one line, no orphan left

Why not trust TensorFlow's `checkpoint` state file: it names one latest checkpoint, and
when that one is missing or damaged tf.train.latest_checkpoint returns None (training
silently restarts at step 0 and the CheckpointManager then rotates the good older
checkpoints away) or a path whose restore fails with a raw IndexError/DataLossError.
The lock lives in genesis_tf.run_lock (pure Python, re-exported here). Below
genesis_tf.runs; imports nothing of genesis_tf but the error base and the lock.
"""
import collections
import contextlib
import errno
import os
import re
import time
import uuid

import tensorflow as tf

from genesis_tf.errors import UserError
from genesis_tf.run_lock import (  # noqa: F401
    LOCK_FILE,
    PARTIAL_SUFFIX,
    RunDirectoryError,
    RunLock,
    RunLockedError,
    warn,
)

CHECKPOINT_NAME = "ckpt"
STATE_FILE = "checkpoint"
HISTORY_DIR = "config_history"
# Another process (evaluate writing results) may be mid-write: leave young partial files.
PARTIAL_MIN_AGE_SECONDS = 600

Skipped = collections.namedtuple("Skipped", "path reason")


class DamagedCheckpointError(UserError, RuntimeError):
    """A checkpoint's files are missing, truncated or corrupt."""


class NoSpaceError(UserError, OSError):
    """The disk filled up while saving a checkpoint."""


# --- which checkpoints read back whole ------------------------------------------------

def list_checkpoints(model_dir, name=CHECKPOINT_NAME):
    """[(step, prefix)] of every checkpoint with any file in model_dir, newest first,
    found from the files themselves (an index or a data shard), not the state file."""
    pattern = re.compile(re.escape(name) + r"-(\d+)\.(?:index|data-\d{5}-of-\d{5})")
    steps = set()
    for filename in tf.io.gfile.listdir(model_dir) if tf.io.gfile.isdir(model_dir) else ():
        match = pattern.fullmatch(filename.rstrip("/"))
        if match:
            steps.add(int(match.group(1)))
    return [(step, os.path.join(model_dir, f"{name}-{step}"))
            for step in sorted(steps, reverse=True)]


def _missing_files(prefix):
    """A reason when the checkpoint's index or one of its data shards is not there."""
    if not tf.io.gfile.exists(prefix + ".index"):
        return "index file missing"
    shards = tf.io.gfile.glob(prefix + ".data-?????-of-?????")
    if not shards:
        return "data file missing"
    count = int(shards[0][-5:])
    missing = [i for i in range(count)
               if not tf.io.gfile.exists(f"{prefix}.data-{i:05d}-of-{count:05d}")]
    if missing:
        return f"data shard {missing[0]} of {count} missing"
    return None


def _reason(error):
    """The short cause of a read failure, in the words a user can act on."""
    text = str(error)
    for needle, reason in (("Read less bytes", "data file truncated"),
                           ("Checksum does not match", "checksum mismatch in the data file"),
                           ("sstable", "index file damaged (not an sstable)"),
                           ("No such file", "a data file is missing")):
        if needle in text:
            return reason
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"unreadable: {first[:160]}"


def checkpoint_problem(prefix):
    """None when every tensor of the checkpoint at `prefix` reads back with a valid
    checksum, else a short reason. Reads the whole checkpoint: about 0.03 s for 40 MB in
    the page cache, disk speed otherwise."""
    missing = _missing_files(prefix)
    if missing:
        return missing
    try:
        reader = tf.train.load_checkpoint(prefix)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)  # the bundle reader checks each tensor's crc32c
    except (tf.errors.OpError, IndexError, ValueError, OSError) as error:
        return _reason(error)
    return None


def readable_checkpoints(model_dir, name=CHECKPOINT_NAME, limit=None):
    """([readable prefixes], [Skipped]) newest first; stops after `limit` readable ones."""
    readable, skipped = [], []
    for _, prefix in list_checkpoints(model_dir, name):
        if limit is not None and len(readable) >= limit:
            break
        problem = checkpoint_problem(prefix)
        if problem:
            skipped.append(Skipped(prefix, problem))
        else:
            readable.append(prefix)
    return readable, skipped


def latest_readable_checkpoint(model_dir, name=CHECKPOINT_NAME):
    """(prefix of the newest checkpoint that reads back whole or None, [Skipped newer
    ones with their reason])."""
    readable, skipped = readable_checkpoints(model_dir, name, limit=1)
    return (readable[0] if readable else None), skipped


def describe_skipped(skipped):
    """'ckpt-7930 (data file truncated), ckpt-7900 (index file missing)'."""
    return ", ".join(f"{os.path.basename(s.path)} ({s.reason})" for s in skipped)


def checked_checkpoint(path, model_dir=None):
    """`path` if it reads back whole; else DamagedCheckpointError naming the file, the
    reason and the newest readable checkpoint of model_dir to pass instead."""
    problem = checkpoint_problem(path)
    if problem is None:
        return path
    folder = model_dir or os.path.dirname(path)
    newest, _ = latest_readable_checkpoint(folder)
    missing = problem == "index file missing" and not tf.io.gfile.glob(path + ".*")
    what = "cannot be found" if missing else f"is damaged ({problem})"
    advice = (f"the newest readable one is {os.path.basename(newest)}: pass "
              f"--checkpoint={newest}" + ("" if missing else " or delete the damaged files")
              if newest else
              f"{folder} holds no readable checkpoint: train again in a new --model_dir")
    raise DamagedCheckpointError(f"checkpoint {path} {what}; {advice}")


@contextlib.contextmanager
def reading_checkpoint(path, model_dir=None):
    """Turns a raw read failure inside the block (IndexError 'Read less bytes than
    requested', DataLossError 'Checksum does not match', 'not an sstable') into
    checked_checkpoint's one-line DamagedCheckpointError: for restores of files that
    were damaged after they were checked."""
    try:
        yield
    except (tf.errors.OpError, IndexError) as error:
        if isinstance(error, tf.errors.OpError) and not isinstance(
                error, (tf.errors.DataLossError, tf.errors.NotFoundError)) and _reason(
                error).startswith("unreadable"):
            raise  # not a damaged file (a shape mismatch, ...): the caller's to explain
        checked_checkpoint(path, model_dir)  # names the file, the reason, the fallback
        raise DamagedCheckpointError(f"checkpoint {path} is damaged ({_reason(error)}); "
                                     "pass another --checkpoint") from error


def resolve_checkpoint(model_dir, checkpoint=None, report=warn):
    """The checkpoint a tool should restore: `checkpoint` if given (checked whole),
    else the newest readable one of model_dir, reporting in one line what was skipped.
    None when model_dir has no checkpoint files at all."""
    if checkpoint:
        return checked_checkpoint(checkpoint, model_dir)
    path, skipped = latest_readable_checkpoint(model_dir)
    if skipped and path:
        report(f"skipped damaged checkpoint(s) {describe_skipped(skipped)}; "
               f"using {os.path.basename(path)}")
    if skipped and not path:
        raise DamagedCheckpointError(
            f"no readable checkpoint in {model_dir}: {describe_skipped(skipped)}; restore "
            "the files from a copy, or delete them and train again")
    return path


# --- the `checkpoint` state file --------------------------------------------------------

def read_checkpoint_state(model_dir):
    """The CheckpointState proto of model_dir's state file, or None when it is missing or
    garbled (parsed here: TensorFlow's reader logs and returns None, or raises)."""
    from google.protobuf import text_format
    from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState

    path = os.path.join(model_dir, STATE_FILE)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            state = text_format.Parse(f.read().decode("utf-8"), CheckpointState())
    except (text_format.ParseError, UnicodeDecodeError, tf.errors.OpError):
        return None
    return state if state.model_checkpoint_path else None


def _state_names(state):
    return [os.path.basename(p.rstrip("/")) for p in state.all_model_checkpoint_paths]


def repair_checkpoint_state(model_dir, name=CHECKPOINT_NAME, report=warn):
    """Rewrites model_dir's `checkpoint` state file from the checkpoints that read back
    whole when it is missing, garbled, or names anything but the newest readable one, so
    that a CheckpointManager built afterwards restores the newest readable checkpoint and
    rotates only among readable ones. Returns (newest readable prefix or None, [Skipped]);
    damaged files are reported, never deleted."""
    readable, skipped = readable_checkpoints(model_dir, name)
    state = read_checkpoint_state(model_dir)
    names = [os.path.basename(p) for p in reversed(readable)]  # oldest first, as TF keeps
    if skipped and names:  # with none readable the caller refuses (prepare_resume)
        report(f"skipped damaged checkpoint(s) {describe_skipped(skipped)}; resuming "
               f"from {names[-1]}")
    current = state is not None and (
        os.path.basename(state.model_checkpoint_path) == (names[-1] if names else None)
        and set(_state_names(state)) <= set(names))
    if not names and not skipped and tf.io.gfile.exists(os.path.join(model_dir, STATE_FILE)):
        # It names checkpoints that are gone: a manager would try to restore them.
        _remove(os.path.join(model_dir, STATE_FILE))
        report(f"removed {os.path.join(model_dir, STATE_FILE)}: it names checkpoints "
               "that are not there; starting without one")
    if not names or current:
        return (readable[0] if readable else None), skipped
    _write_state(model_dir, names)
    report(f"rebuilt {os.path.join(model_dir, STATE_FILE)} from the checkpoints present"
           f" ({', '.join(names)})")
    return readable[0], skipped


def prepare_resume(model_dir, report=warn):
    """What a trainer does first, holding the RunLock and before it builds its
    CheckpointManager: removes orphans of interrupted saves (one line saying what was
    freed) and repairs the state file. Returns (newest readable prefix or None,
    [Skipped])."""
    count, freed = clean_orphans(model_dir)
    if count:
        report(describe_freed(count, freed))
    newest, skipped = repair_checkpoint_state(model_dir, report=report)
    if skipped and newest is None:  # a start at step 0 would overwrite them in time
        raise DamagedCheckpointError(
            f"no readable checkpoint in {model_dir}: {describe_skipped(skipped)}; restore "
            "the files from a copy, or delete them to train from the start")
    return newest, skipped


def _write_state(model_dir, names):
    """The state file TF's CheckpointManager writes, with relative paths and each file's
    time, so that the manager rotates these checkpoints as if it had saved them."""
    from google.protobuf import text_format
    from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState

    times = [tf.io.gfile.stat(os.path.join(model_dir, n + ".index")).mtime_nsec / 1e9
             for n in names]
    state = CheckpointState(
        model_checkpoint_path=names[-1], all_model_checkpoint_paths=names,
        all_model_checkpoint_timestamps=times,
        # Older than every file: the manager deletes only what is in its keep window.
        last_preserved_timestamp=min(times) - 1)
    write_atomically(os.path.join(model_dir, STATE_FILE), text_format.MessageToString(state))


# --- orphans, full disks, small files ---------------------------------------------------

# What an interrupted tf.train.Checkpoint save leaves (TF 2.21): the folder
# <prefix>_temp/ holding part-*.{index,data-*} and their *.tempstate<digits> files, and
# the state file's own temporary copy, checkpoint.tmp<32 hex digits>.
_SAVE_ORPHAN = re.compile(r".+_temp|.+\.tempstate\d+|" + STATE_FILE + r"\.tmp[0-9a-f]{32}")


def _size(path):
    if not tf.io.gfile.isdir(path):
        return tf.io.gfile.stat(path).length
    return sum(tf.io.gfile.stat(os.path.join(root, f)).length
               for root, _, files in tf.io.gfile.walk(path) for f in files)


def _delete(path):
    """(1, bytes) after deleting a file or folder, (0, 0) when it vanished meanwhile."""
    try:
        size = _size(path)
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)
    except tf.errors.NotFoundError:
        return 0, 0
    return 1, size


def _is_orphan(model_dir, name, now):
    path = os.path.join(model_dir, name)
    if _SAVE_ORPHAN.fullmatch(name):
        return True
    if name.endswith(PARTIAL_SUFFIX) and not tf.io.gfile.isdir(path):
        return now - tf.io.gfile.stat(path).mtime_nsec / 1e9 > PARTIAL_MIN_AGE_SECONDS
    return False


def clean_orphans(model_dir):
    """Removes what interrupted saves left in model_dir: <prefix>_temp folders and
    temporary files of a checkpoint save, old *.partial files of write_atomically, and
    0-byte config_history/*.gin. Returns (count, bytes freed). Call it holding the
    RunLock: a running trainer's save in progress looks the same."""
    if not tf.io.gfile.isdir(model_dir):
        return 0, 0
    now, count, freed = time.time(), 0, 0
    names = [n.rstrip("/") for n in tf.io.gfile.listdir(model_dir)]
    paths = [os.path.join(model_dir, n) for n in names if _is_orphan(model_dir, n, now)]
    history = os.path.join(model_dir, HISTORY_DIR)
    if tf.io.gfile.isdir(history):
        paths += [p for p in tf.io.gfile.glob(os.path.join(history, "*.gin"))
                  if tf.io.gfile.stat(p).length == 0]
    for path in paths:
        removed, size = _delete(path)
        count, freed = count + removed, freed + size
    return count, freed


def describe_freed(count, freed):
    """'removed 2 leftovers of interrupted saves (38.1 MB)'."""
    return f"removed {count} leftover(s) of interrupted saves ({freed / 1e6:.1f} MB)"


def _out_of_space(error):
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(error, tf.errors.OpError) and (
        "No space left" in str(error) or "quota exceeded" in str(error).lower())


def remove_partial_save(prefix):
    """Deletes the files of an unfinished save of `prefix` (its _temp folder, its index
    and data files, temporary files beside them); returns (count, bytes)."""
    folder, count, freed = os.path.dirname(prefix), 0, 0
    paths = tf.io.gfile.glob(prefix + "_temp") + tf.io.gfile.glob(prefix + ".*")
    paths += tf.io.gfile.glob(os.path.join(folder, STATE_FILE + ".tmp*"))
    for path in paths:
        removed, size = _delete(path)
        count, freed = count + removed, freed + size
    return count, freed


def save_checkpoint(manager, step, check_interval=False):
    """manager.save(checkpoint_number=step, check_interval=...); a full disk becomes
    NoSpaceError, one line, after the partial files of this save are removed (the previous
    checkpoint stays)."""
    previous = manager.latest_checkpoint
    # CheckpointManager keeps its prefix private ("<directory>/ckpt" by default).
    base = getattr(manager, "_checkpoint_prefix", None)
    prefix = f"{base or os.path.join(manager.directory, CHECKPOINT_NAME)}-{step}"
    try:
        return manager.save(checkpoint_number=step, check_interval=check_interval)
    except (tf.errors.OpError, OSError) as error:
        if not _out_of_space(error):
            raise
        if prefix != previous:
            remove_partial_save(prefix)
        kept = (f"the previous checkpoint {os.path.basename(previous)} is intact"
                if previous else "no earlier checkpoint exists")
        raise NoSpaceError(
            f"no space left on {manager.directory} while saving "
            f"{os.path.basename(prefix)}; {kept}; free space and rerun to resume") from error


def _remove(path):
    try:
        tf.io.gfile.remove(path)
    except tf.errors.NotFoundError:
        pass


def write_atomically(path, content):
    """Writes text or bytes under a temporary name beside `path`, then renames it: a
    reader never sees a half-written file, and a failed write leaves the old one."""
    partial = f"{path}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
    try:
        with tf.io.gfile.GFile(partial, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        tf.io.gfile.rename(partial, path, overwrite=True)
    except BaseException:
        _remove(partial)
        raise
