"""The shell shared by every command: one-line errors, exit codes, quiet TensorFlow start-up."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

from ..errors import Interrupted, TrainingFailed, UsageError, describe_os_error


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `prog: error: ... (see prog --help)`, exit code 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")
        sys.exit(2)


def one_line(message: object) -> str:
    """The message with control characters escaped, so user text (a file name or a flag value
    holding a newline or a carriage return) can never break the one-line error."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(message))


def quiet_tensorflow() -> None:
    """Set up the environment of the heavy imports; must run before tensorflow is imported.

    Hides TensorFlow's C++ start-up chatter. Also makes OpenMP threads sleep instead of spin
    while they wait: keras imports scikit-learn, whose OpenMP runtime reads this once when it
    loads, and its spinning threads make t-SNE (vae-plot --tsne) an order of magnitude slower
    whenever other processes share the cores. TensorFlow's own thread pools do not use OpenMP.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_main(prog: str, work: Callable[[], int | None]) -> int:
    """Run a command's work, turning known failures into one stderr line and an exit code."""
    try:
        return work() or 0
    except UsageError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return UsageError.exit_code
    except TrainingFailed as e:
        print(f"{prog}: {one_line(e)}", file=sys.stderr)
        return TrainingFailed.exit_code
    except Interrupted as e:
        print(f"{prog}: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # disk full, read-only or vanished folders while working: exit 1
        print(f"{prog}: error: {one_line(describe_os_error(e))}", file=sys.stderr)
        return TrainingFailed.exit_code



class ProgressLine:
    """`progress(done, total)` callback drawing one line on stderr, rewritten in place:
    `label: 12,288/100,000 images (12%), 2,345/s, 0:37 left`. Only on a terminal: logs and
    pipes get nothing, so a redirected stderr keeps its one-line errors."""

    def __init__(self, label: str, unit: str = "images", stream=None, min_interval: float = 0.2):
        self.label, self.unit, self.min_interval = label, unit, min_interval
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.start = self.last = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if not self.enabled or (done < total and now - self.last < self.min_interval):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        left = int((total - done) / rate) if rate > 0 else 0
        line = (f"\r{self.label}: {done:,}/{total:,} {self.unit} ({100 * done // max(total, 1)}%), "
                f"{rate:,.0f}/s, {left // 60}:{left % 60:02d} left")
        self.stream.write(line + "\x1b[K" + ("\n" if done >= total else ""))  # clear the old tail
        self.stream.flush()


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    return value


def finite_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 32,64, got {text!r}") from None


def int_in(low: int, high: int) -> Callable[[str], int]:
    """argparse type: an integer from low to high, else a one-line error naming the range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {value}")
        return value
    return parse


def float_in(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number in [low, high] ((low, high] with low_open)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (low < value if low_open else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a number {'>' if low_open else '>='} {low:g} and <= {high:g}, got {text}")
        return value
    return parse

