"""One console line per reporting interval: step, speed, ELBO, err, KLs, β and ETA."""
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
    def __init__(self, total_steps, stream=None):
        self.total_steps = total_steps
        self.stream = stream or sys.stdout
        self._last = None

    def start(self, step):
        self._last = (time.monotonic(), step)

    def report(self, step, metrics):
        now = time.monotonic()
        last_time, last_step = self._last or (now, step)
        rate = (step - last_step) / max(now - last_time, 1e-9)
        self._last = (now, step)
        eta = (self.total_steps - step) / rate if rate > 0 else float("nan")
        line = (
            f"step {step:>7d}/{self.total_steps} | {rate:6.2f} steps/s | "
            f"elbo {metrics['elbo']:10.1f} | err {metrics['err']:10.1f} | "
            f"kl_m {metrics['kl_m']:7.2f} | kl_l {metrics['kl_l']:7.2f} | "
            f"beta {metrics['beta']:.3e} | ETA {format_duration(eta) if rate > 0 else '?'}"
        )
        print(line, file=self.stream, flush=True)
        return line
