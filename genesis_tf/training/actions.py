"""What the outer training loop does between inner loops: small callables on a Tick.

Each action is a callable `action(tick)` (orbit's actions, without the dependency).
`Periodic` keeps *when* apart from *what*: `Periodic(every, action)` runs `action` when
the step crosses a multiple of `every`, and after the last step. The loop runs them in
list order, so the divergence guard goes first (a diverged state is never saved).
Two things decide whether a tick is the last one, before any action runs: `TimeBudget`
and `StopSignals` (SIGINT/SIGTERM).
"""
import os
import signal
import threading
import time
from typing import Any, NamedTuple

import numpy as np

from genesis_tf import run_safety
from genesis_tf.errors import UserError
from genesis_tf.training import summaries


class TrainingDivergedError(UserError, RuntimeError):
    """Non-finite loss or an ELBO beyond the limit; the last good checkpoint is kept."""

    exit_code = 3


class TrainingInterrupted(Exception):  # noqa: N818 (not an error: the user asked for it)
    """SIGINT or SIGTERM arrived; a checkpoint was saved. ``exit_code`` is 128 + signal."""

    def __init__(self, signal_number, step, checkpoint):
        self.signal_number, self.step, self.checkpoint = signal_number, step, checkpoint
        self.exit_code = 128 + signal_number
        name = signal.Signals(signal_number).name
        super().__init__(f"{name}: stopped at step {step}, checkpoint {checkpoint}; "
                         "rerun the same command to resume")


class Tick(NamedTuple):
    """What one inner loop left behind."""

    step: int  # the step counter after it
    steps_run: int  # how many steps it ran
    metrics: dict  # the term means since the last summary, 'elbo', GECO's 'beta', ...
    final: bool  # the last tick of this run: done, out of time or interrupted


class Periodic(NamedTuple):
    """Runs `action(tick)` when the step crosses a multiple of `every` (0: never) and,
    with at_end, on the final tick."""

    every: int
    action: Any  # callable(tick)
    at_end: bool = True

    def due(self, tick):
        every = self.every
        crossed = bool(every) and tick.step // every != (tick.step - tick.steps_run) // every
        return crossed or (tick.final and self.at_end)

    def __call__(self, tick):
        if self.due(tick):
            self.action(tick)


class DivergenceGuard(NamedTuple):
    """Stops the run (TrainingDivergedError) on a non-finite metric or an ELBO above
    max_elbo, before anything saves the diverged state."""

    max_elbo: float
    manager: Any  # the CheckpointManager, to name the last good checkpoint

    def __call__(self, tick):
        metrics = tick.metrics
        if np.all(np.isfinite(list(metrics.values()))) and metrics["elbo"] <= self.max_elbo:
            return
        raise TrainingDivergedError(
            f"training diverged at step {tick.step}: " +
            ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()) +
            f" (limit elbo {self.max_elbo:.3g}). The last good checkpoint, "
            f"{self.manager.latest_checkpoint}, is kept; lower the learning rate "
            "(make_optimizer.learning_rate) or check the data, then rerun to resume from it.")


class ProgressLog:
    """One console line (genesis_tf.progress) every `every_seconds`, and at the end."""

    def __init__(self, progress, every_seconds):
        self.progress, self.every_seconds, self._last = progress, every_seconds, 0.0

    def __call__(self, tick):
        self.progress.tick(tick.step)
        now = time.monotonic()
        if now - self._last >= self.every_seconds or tick.final:
            self.progress.report(tick.step, tick.metrics)
            self._last = now


class WriteSummaries(NamedTuple):
    """train/<term>, train/elbo and optim/* scalars: the means since the last summary,
    which then start afresh."""

    writer: Any
    term_means: dict
    progress: Any

    def __call__(self, tick):
        metrics = dict(tick.metrics, steps_per_sec=self.progress.rate)
        summaries.write_scalars(self.writer, tick.step, metrics, "train")
        for metric in self.term_means.values():
            metric.reset_state()


class WriteImages:
    """images/* of a fixed batch (`preview_fn()` -> images, drawn once) and prior samples."""

    def __init__(self, writer, model, preview_fn):
        self.writer, self.model, self.preview_fn = writer, model, preview_fn
        self._images = None

    def __call__(self, tick):
        if self._images is None:
            self._images = self.preview_fn()
        summaries.write_images(self.writer, tick.step, self._images.numpy(),
                               self.model(self._images, training=False),
                               self.model.sample(8, seed=0))


class Validate(NamedTuple):
    """val/<term> and val/elbo from `evaluate_fn()` (genesis_tf.metrics.elbo), printed too."""

    writer: Any
    evaluate_fn: Any

    def __call__(self, tick):
        values = self.evaluate_fn()
        summaries.write_scalars(self.writer, tick.step, values, "val")
        print(f"validation at step {tick.step}: " +
              ", ".join(f"{k} {v:.2f}" for k, v in values.items()), flush=True)


class SaveCheckpoint(NamedTuple):
    """Asks the CheckpointManager to save: when its interval has passed (periodic=True),
    and always on the final tick. Checkpoints are numbered by step (ckpt-<step>)."""

    manager: Any
    periodic: bool

    def __call__(self, tick):
        if tick.final or self.periodic:  # a full disk: one line, no partial files left
            run_safety.save_checkpoint(self.manager, tick.step, check_interval=not tick.final)


class TimeBudget:
    """max_minutes of wall-clock time from start() (None: no limit)."""

    def __init__(self, max_minutes):
        self.max_minutes, self.started = max_minutes, time.monotonic()

    @property
    def deadline(self):
        return None if self.max_minutes is None else self.started + 60.0 * self.max_minutes

    def expired(self):
        return self.max_minutes is not None and time.monotonic() > self.deadline


class StopSignals:
    """Turns SIGINT/SIGTERM into a flag the outer loop checks between inner loops (so the
    checkpoint holds a finished step). A second signal stops at once."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signal_number, frame):
        if self.received is not None:  # second signal: give up waiting
            signal.signal(signal_number, signal.SIG_DFL)
            os.kill(os.getpid(), signal_number)
            return
        self.received = signal_number
        print(f"\n{signal.Signals(signal_number).name} received: saving a checkpoint after "
              "the current steps (send it again to stop at once)", flush=True)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
