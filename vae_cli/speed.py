"""How a training run uses the machine: compile and pipeline settings, chosen per device.

Nothing here changes the math of training, only how fast it runs. `choose` turns the device
(CPU or GPU) and the Config's speed fields into one `SpeedSettings`; the trainer applies it and
records it in metrics.json. Each automatic choice is the one that won in
`python benchmarks/levers.py` (README, "Performance", has the numbers).
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass

from .config import Config

# Most batches per compiled call. One call per batch costs ~0.1-0.3 ms of Python and callback
# work, a large share of a 784-400-20 MLP step (~5 ms on 2 cores); up to 32 hides it. The NaN
# guard, Ctrl-C and the progress bar then act every few dozen steps, still well within an epoch.
STEPS_PER_EXECUTION = 32

@dataclass(frozen=True)
class SpeedSettings:
    device: str  # "cpu" or "gpu": what TensorFlow can see
    steps_per_execution: int
    jit_compile: bool  # XLA for the training step

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def choose(config: Config, *, gpu: bool, distributed: bool = False,
           epoch_steps: int | None = None) -> SpeedSettings:
    """The settings a run uses: the Config's explicit values, else the per-device defaults.

    epoch_steps: batches per epoch when the training data is one pipeline over all epochs cut
    into epochs by step count (in-memory arrays); None when each epoch is its own pass.
    """
    return SpeedSettings(
        device="gpu" if gpu else "cpu",
        steps_per_execution=_steps_per_execution(config.steps_per_execution or STEPS_PER_EXECUTION,
                                                 epoch_steps),
        jit_compile=_jit(config, gpu, distributed),
    )


def _steps_per_execution(most: int, epoch_steps: int | None) -> int:
    """The largest divisor of epoch_steps up to `most`. A compiled call keeps taking batches from
    the iterator until it has run its steps, so over a pipeline that spans all epochs a call
    that does not end at an epoch's last batch would train on the next epoch's batches."""
    if not epoch_steps:
        return most
    return max(d for d in range(1, min(most, epoch_steps) + 1) if epoch_steps % d == 0)


def _jit(config: Config, gpu: bool, distributed: bool) -> bool:
    """XLA fuses the many small elementwise ops of a dense VAE and its Adam update (a large win
    on CPU), but its CPU convolutions are ~2x slower than oneDNN's, so conv models skip it on CPU.
    Under tf.distribute it stays off unless asked for, as Keras's own "auto" does. Shift
    augmentation's RandomTranslation has no XLA kernel (Keras would switch XLA off with a warning
    and the run would record a setting it did not use).
    """
    if config.jit_compile != "auto":
        return config.jit_compile == "on"
    return not distributed and not config.augment_shift and (gpu or config.arch == "mlp")


def _samples_per_second(n: int, seconds: list[float]) -> float | None:
    steady = seconds[1:] or seconds  # epoch 1 pays for tracing
    return round(n / statistics.median(steady), 1) if steady else None


def speed_metrics(n: int, epoch_seconds: list[float], train_seconds: list[float],
                  settings: SpeedSettings) -> dict:
    """metrics.json's speed: the training batches alone (what benchmarks/speed.py compares), whole epochs
    with validation and callbacks, and the settings that produced them."""
    return {"train_samples_per_second": _samples_per_second(n, train_seconds or epoch_seconds),
            "epoch_samples_per_second": _samples_per_second(n, epoch_seconds),
            "train_seconds": [round(t, 4) for t in train_seconds],
            "epoch_seconds": [round(t, 4) for t in epoch_seconds],
            "speed": settings.to_dict()}
