"""How a training run uses the machine: compile and pipeline settings, chosen per device.

Nothing here changes the math of training, only how fast it runs. `choose` turns the engine
(backend.py chose it, by measurement under --backend auto), the device (CPU or GPU) and the
Config's speed fields into one `SpeedSettings`; the trainer applies it, prints it on its
`speed:` line and records it in metrics.json. Each automatic choice is the one that won in
`python benchmarks/levers.py` (README, "Performance", has the numbers).
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass

from . import backend
from .config import Config

# Most batches per compiled call. One call per batch costs ~0.1-0.3 ms of Python and callback
# work, a large share of a 784-400-20 MLP step (~5 ms on 2 cores); up to 32 hides it. The NaN
# guard, Ctrl-C and the progress bar then act every few dozen steps, still well within an epoch.
STEPS_PER_EXECUTION = 32

@dataclass(frozen=True)
class SpeedSettings:
    device: str  # "cpu" or "gpu": what the engine can see
    backend: str  # the Keras engine
    steps_per_execution: int
    jit_compile: bool  # XLA for the training step
    precision: str  # the Keras dtype policy of the network
    backend_reason: str = dataclasses.field(default="", compare=False)  # why this engine

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        del d["backend_reason"]  # metrics.json has it under "backend"
        return d


def has_gpu() -> bool:
    return backend.has_gpu()


def choose(config: Config, engine: backend.Engine | None = None, *, gpu: bool, distributed: bool = False,
           epoch_steps: int | None = None) -> SpeedSettings:
    """The settings a run uses: the Config's explicit values, else the per-device defaults.

    engine: the Keras engine (None: TensorFlow); epoch_steps: batches per epoch when the training
    data is one pipeline over all epochs cut into epochs by step count (in-memory arrays); None
    when each epoch is its own pass.
    """
    engine = engine or backend.Engine(backend.DEFAULT_ENGINE, "default")
    most = config.steps_per_execution or STEPS_PER_EXECUTION
    return SpeedSettings(
        device="gpu" if gpu else "cpu",
        backend=engine.name,
        # Keras 3.15's several-steps loop fails over a distributed dataset of 2+ replicas on TensorFlow
        # ("You must feed a value for placeholder tensor"), measured here: one step per call there
        steps_per_execution=1 if distributed else _steps_per_execution(most, epoch_steps),
        jit_compile=_jit(config, engine.name, gpu, distributed),
        precision=backend.dtype_policy(config.precision, gpu),
        backend_reason=engine.reason,
    )


def speed_line(settings: SpeedSettings) -> str:
    """What vae-train prints after `speed:`, the engine with why it was chosen."""
    d = settings.to_dict()
    d["backend"] = f"{settings.backend} ({settings.backend_reason})"
    return ", ".join(f"{k} {v}" for k, v in d.items())


def _steps_per_execution(most: int, epoch_steps: int | None) -> int:
    """The largest divisor of epoch_steps up to `most`. A compiled call keeps taking batches from
    the iterator until it has run its steps, so over a pipeline that spans all epochs a call
    that does not end at an epoch's last batch would train on the next epoch's batches."""
    if not epoch_steps:
        return most
    return max(d for d in range(1, min(most, epoch_steps) + 1) if epoch_steps % d == 0)


def _jit(config: Config, engine: str, gpu: bool, distributed: bool) -> bool:
    """On TensorFlow, XLA fuses the many small elementwise ops of a dense VAE and its Adam update
    (a large win on CPU), but its CPU convolutions are ~2x slower than oneDNN's, so conv models
    skip it on CPU. Under tf.distribute it stays off unless asked for, as Keras's own "auto"
    does. Shift augmentation's RandomTranslation has no XLA kernel in TensorFlow (Keras would
    switch XLA off with a warning and the run would record a setting it did not use). The JAX
    engine always compiles with XLA: without it Keras runs the step op by op.
    """
    if config.jit_compile != "auto":
        return config.jit_compile == "on"
    if engine == "jax":
        return True
    return not distributed and not config.augment_shift and (gpu or config.arch == "mlp")


def _samples_per_second(n: int, seconds: list[float]) -> float | None:
    steady = seconds[1:] or seconds  # epoch 1 pays for tracing
    return round(n / statistics.median(steady), 1) if steady else None


def speed_metrics(n: int, epoch_seconds: list[float], train_seconds: list[float],
                  settings: SpeedSettings) -> dict:
    """metrics.json's speed: the training batches alone (what benchmarks/speed.py reports), whole epochs
    with validation and callbacks, and the settings that produced them."""
    return {"train_samples_per_second": _samples_per_second(n, train_seconds or epoch_seconds),
            "epoch_samples_per_second": _samples_per_second(n, epoch_seconds),
            "train_seconds": [round(t, 4) for t in train_seconds],
            "epoch_seconds": [round(t, 4) for t in epoch_seconds],
            "speed": settings.to_dict()}
