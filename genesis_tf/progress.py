"""Progress on the console: training steps (`Progress`) and counted work (`ProgressBar`).

`Progress` prints one line per reporting interval of a training run: step, speed, ELBO,
err, each KL, β and ETA. Its speed and ETA count from ``start``, called after the first
(tracing) call of the training step, so the graph's compilation does not distort them.

`ProgressBar` counts images for the tools (evaluation, FID, probes): redrawn in place on a
terminal, one line every few seconds in logs and pipes.
"""
import sys
import time


def format_duration(seconds):
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


class Progress:
    """`deadline` (time.monotonic() seconds) is the end of a time budget (train.max_minutes):
    the ETA is the sooner of the steps left at the current speed and the budget left."""

    def __init__(self, total_steps, stream=None, deadline=None):
        self.total_steps = total_steps
        self.stream = stream or sys.stdout
        self.deadline = deadline
        self.rate = 0.0  # steps/s over the last tick
        self._start = None
        self._last = None

    def start(self, step):
        self._start = self._last = (time.monotonic(), step)

    def tick(self, step):
        """Records that `step` was reached; updates `rate` (steps/s since the last tick)."""
        now = time.monotonic()
        if self._last is None:
            self.start(step)
            return
        last_time, last_step = self._last
        if step > last_step:
            self.rate = (step - last_step) / max(now - last_time, 1e-9)
            self._last = (now, step)

    def report(self, step, metrics):
        """Prints and returns the line for `step` with `metrics` (summary names)."""
        rate = self.rate
        if self._start is not None and step > self._start[1]:
            rate = (step - self._start[1]) / max(time.monotonic() - self._start[0], 1e-9)
        eta = format_duration((self.total_steps - step) / rate) if rate > 0 else "?"
        if self.deadline is not None:
            budget_left = self.deadline - time.monotonic()
            if rate <= 0 or budget_left < (self.total_steps - step) / rate:
                eta = format_duration(budget_left) + " (time budget)"
        speed = f"{rate:6.2f}" if rate > 0 else "     ?"
        kls = " | ".join(f"{k} {v:7.2f}" for k, v in metrics.items() if k.startswith("kl_"))
        line = (
            f"step {step:>7d}/{self.total_steps} | {speed} steps/s | "
            f"elbo {metrics['elbo']:10.1f} | err {metrics['err']:10.1f} | {kls} | "
            + (f"beta {metrics['beta']:.3e} | " if "beta" in metrics else "")  # GECO runs
            + f"ETA {eta}"
        )
        print(line, file=self.stream, flush=True)
        return line


class ProgressBar:
    """`label: done/total images (rate/s, ETA)` on stderr for long loops: redrawn in place
    on a terminal, one line every `every` seconds otherwise (logs, pipes)."""

    def __init__(self, label, total=None, stream=None, every=10.0):
        self._time = time.monotonic
        self.label, self.total, self.stream, self.every = label, total, stream or sys.stderr, every
        self._started = self._last = self._time()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = 0

    def __call__(self, done):
        self.done = done
        now = self._time()
        if self._tty or now - self._last >= self.every:
            self._last = now
            self._write(self.line(), end="\r" if self._tty else "\n")

    def line(self):
        elapsed = max(self._time() - self._started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {self.done:,}" + (f"/{self.total:,}" if self.total else "")
        text += f" images ({rate:.1f}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", ETA {format_duration((self.total - self.done) / rate)}"
        return text + ")"

    def finish(self):
        self._write(self.line() + " done", end="\n")

    def _write(self, text, end):
        self.stream.write(("\r\033[K" if self._tty else "") + text + end)
        self.stream.flush()
