"""One writer per run directory: a lock file holding the trainer's host, PID and start time.

    with RunLock(model_dir, force=FLAGS.force):   # RunLockedError: one line naming the
        ...                                       # first trainer and --force

Pure Python (TensorFlow is imported only for gs:// folders), so a binary can take the
lock before its 4-second TensorFlow import and refuse a second trainer at once.
"""
import json
import os
import socket
import sys
import time
import uuid

from genesis_tf.errors import UserError

LOCK_FILE = "trainer.lock"
PARTIAL_SUFFIX = ".partial"


class RunLockedError(UserError, RuntimeError):
    """Another trainer writes to this run directory."""


class RunDirectoryError(UserError, OSError):
    """The run directory cannot be created or written."""


def warn(message):
    """One warning line on stderr (the tools' and the trainer's console)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _process_start(pid):
    """The process's start time in clock ticks since boot (Linux), else None: tells a
    live trainer from a new process that reuses its PID (containers restart at PID 1)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid, started):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    now = _process_start(pid)
    return started is None or now is None or started == now


def _lock_is_stale(holder):
    """True when the holder ran on this host and its process is gone."""
    if holder.get("host") != socket.gethostname():
        return False
    if holder.get("boot_id") and holder.get("boot_id") != _boot_id():
        return True  # the machine restarted since
    try:
        pid = int(holder.get("pid"))
    except (TypeError, ValueError):
        return False
    return not _pid_alive(pid, holder.get("process_start"))


def _describe_holder(holder):
    since = holder.get("since")
    since = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
             if isinstance(since, (int, float)) else "an unknown time")
    return f"PID {holder.get('pid')} on {holder.get('host')} (since {since})"


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


class RunLock:
    """A lock file (host, PID, start time) that keeps a second trainer out of a run
    directory while the first runs; a context manager, released on exit.

    Created atomically: the full record is written under a private name and hard-linked
    to LOCK_FILE, which fails when the name exists (O_EXCL semantics, and no reader ever
    sees a half-written lock). A lock of this host whose process is gone (or whose PID a
    newer process reuses) is stale: reported and taken over. `force=True` takes over
    any lock. On storage without links (gs://) the check is best effort: read, then write.
    """

    def __init__(self, model_dir, force=False, report=warn):
        self.model_dir, self.force, self.report = model_dir, force, report
        self.path = os.path.join(model_dir, LOCK_FILE)
        self.created_dir = False
        self.record = {"host": socket.gethostname(), "pid": os.getpid(),
                       "since": time.time(), "boot_id": _boot_id(),
                       "process_start": _process_start(os.getpid()),
                       "token": uuid.uuid4().hex, "command": " ".join(sys.argv)[:300]}

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()

    def acquire(self):
        """Takes the lock or raises RunLockedError; creates model_dir if needed."""
        for _ in range(3):  # another trainer may take a stale lock over between our steps
            if self._create():
                return
            holder = self.holder()
            if holder is None:
                raise RunLockedError(
                    f"{self.path} exists but is unreadable; if no trainer runs on "
                    f"{self.model_dir}, delete it or pass --force")
            if not (self.force or _lock_is_stale(holder)):
                raise RunLockedError(
                    f"{self.model_dir} is in use by another trainer, "
                    f"{_describe_holder(holder)}; wait for it to finish, use another "
                    "--model_dir, or pass --force if it is not running")
            self.report(f"took over the {'lock' if self.force else 'stale lock'} of "
                        f"{_describe_holder(holder)} on {self.model_dir}")
            self._remove()
        raise RunLockedError(f"could not lock {self.model_dir}: another trainer keeps "
                             "taking it; is one starting right now?")

    def _create(self):
        """True when the lock file was created by this call, False when one exists."""
        text = json.dumps(self.record, indent=2)
        try:
            if "://" in self.model_dir:
                return self._create_remote(text)
            if not os.path.isdir(self.model_dir):  # removed again if the run writes nothing
                os.makedirs(self.model_dir)
                self.created_dir = True
            private = f"{self.path}.{self.record['token']}{PARTIAL_SUFFIX}"
            with open(private, "w") as f:
                f.write(text)
            try:
                os.link(private, self.path)
                return True
            except FileExistsError:
                return False
            finally:
                os.remove(private)
        except OSError as error:
            raise RunDirectoryError(
                f"cannot write to --model_dir={self.model_dir} ({error.strerror or error});"
                " pass a folder you can write to") from error

    def _create_remote(self, text):
        gfile = _gfile()
        if gfile.exists(self.path):
            return False
        gfile.makedirs(self.model_dir)
        with gfile.GFile(self.path, "w") as f:
            f.write(text)
        return True

    def holder(self):
        """The record in the lock file, or None when it is missing or garbled."""
        try:
            if "://" in self.path:
                with _gfile().GFile(self.path) as f:
                    holder = json.loads(f.read())
            else:
                with open(self.path) as f:
                    holder = json.load(f)
        except Exception:  # noqa: BLE001 - missing, unreadable or not JSON: no holder
            return None
        return holder if isinstance(holder, dict) else None

    def release(self):
        """Removes the lock file if it is still ours (--force may have taken it)."""
        holder = self.holder()
        if holder is not None and holder.get("token") == self.record["token"]:
            self._remove()
        if self.created_dir:  # a run that failed before writing anything leaves no folder
            try:
                os.rmdir(self.model_dir)
            except OSError:  # not empty: the run wrote something
                pass

    def _remove(self):
        try:
            if "://" in self.path:
                _gfile().remove(self.path)
            else:
                os.remove(self.path)
        except Exception:  # noqa: BLE001 - already gone (another process took it over)
            pass
