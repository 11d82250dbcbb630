"""The shell shared by every command: one-line errors, exit codes, quiet TensorFlow start-up."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
import sys
import time
from typing import Callable

from ..backend import import_tensorflow, startup_noise_dropped
from ..errors import Interrupted, TrainingFailed, UsageError, describe_os_error


# A value such as "-0.5,1.2" (vae-sample --z) starts with "-" but is no flag: argparse would read
# it as one, as its own negative-number rule only covers a single number.
_NUMBER_LIST = re.compile(r"^-\.?[0-9][^;,]*[;,]")


def _glue_number_lists(args: list[str] | None) -> list[str]:
    """`--z -0.5,1.2` -> `--z=-0.5,1.2`, so a point list whose first value is negative parses."""
    args = list(sys.argv[1:] if args is None else args)
    glued: list[str] = []
    for arg in args:
        if glued and _NUMBER_LIST.match(arg) and glued[-1].startswith("--") and "=" not in glued[-1]:
            glued[-1] = f"{glued[-1]}={arg}"
        else:
            glued.append(arg)
    return glued


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `prog: error: ... (see prog --help)`, exit code 2.

    Flags must be spelled out (no silent abbreviations: `--epoch` is not `--epochs`), and an
    unknown flag gets a `did you mean` naming the closest real one.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(_glue_number_lists(args), namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._did_you_mean(extras)}")
        return namespace

    def _did_you_mean(self, extras: list[str]) -> str:
        flags = [flag for action in self._actions for flag in action.option_strings if flag.startswith("--")]
        for word in extras:
            if word.startswith("-"):
                given = word.split("=", 1)[0]
                close = ([f for f in flags if f.startswith(given)] if given.startswith("--") else [])
                close = close or difflib.get_close_matches(given, flags, n=1, cutoff=0.6)
                if close:
                    return f"; did you mean {close[0]}?"
        return ""

    def error(self, message):
        end_progress_line()
        sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")
        sys.exit(2)


def one_line(message: object) -> str:
    """The message with control characters escaped, so user text (a file name or a flag value
    holding a newline or a carriage return) can never break the one-line error."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(message))


def quiet_tensorflow() -> None:
    """Set up the environment of the heavy imports and import TensorFlow and Keras quietly.

    Hides TensorFlow's C++ start-up chatter: TF_CPP_MIN_LOG_LEVEL for what comes later, and, for
    the lines written before TensorFlow's logging even starts (no variable silences those), the
    import and the first look at the devices run with file descriptor 2 caught in a temporary
    file; every caught line that is not known noise (backend.STARTUP_NOISE) is then written to stderr.
    Also makes OpenMP threads sleep instead of spin while they wait: keras imports scikit-learn,
    whose OpenMP runtime reads this once when it loads, and its spinning threads make t-SNE
    (vae-plot --tsne) an order of magnitude slower whenever other processes share the cores.
    TensorFlow's own thread pools do not use OpenMP. TF_ENABLE_ONEDNN_OPTS is left alone: it
    changes the numbers.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "tensorflow" in sys.modules or os.environ.get("KERAS_BACKEND") == "jax":
        return  # on the JAX engine nothing imports TensorFlow at start-up
    with startup_noise_dropped():
        import keras  # noqa: F401

        import_tensorflow()


def run_main(prog: str, work: Callable[[], int | None]) -> int:
    """Run a command's work, turning known failures into one stderr line and an exit code."""
    try:
        try:
            return work() or 0
        finally:
            end_progress_line()  # a message after an unfinished progress line starts a line of its own
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


_open_line: list = []  # the stream of a progress line still waiting for its newline, if any


def end_progress_line() -> None:
    """End an unfinished progress line, so the next message starts at the left margin."""
    while _open_line:
        stream = _open_line.pop()
        with contextlib.suppress(Exception):
            stream.write("\n")
            stream.flush()


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
        _open_line[:] = [] if done >= total else [self.stream]


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



SAMPLER_HELP = ("where z comes from: prior (the run's prior: N(0, I), or the learned mixture of a --prior "
                "mog/vamp run) or gmm[:K] (a K-component Gaussian mixture, default 10, fitted to the "
                "training images' codes, drawn from q(z|x), on first use and kept in the run directory as gmm-K.npz)")


def sampler_arg(text: str) -> str:
    """argparse type of --sampler: prior, gmm or gmm:K, checked before anything loads."""
    from ..samplers import parse_sampler

    try:
        parse_sampler(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text
