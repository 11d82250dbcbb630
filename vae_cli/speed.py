"""How a training run uses the machine: compile and pipeline settings, chosen per device.

Nothing here changes the math of training, only how fast it runs. `choose` turns the device
(CPU or GPU) and the Config's speed fields into one `SpeedSettings`; the trainer applies it and
records it in metrics.json. Each automatic choice is the one that won in
`python -m vae_cli.bench --levers` (README, "Performance", has the numbers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import Config

# Batches per compiled call. One call per batch costs ~0.1-0.3 ms of Python and callback work,
# which is a large share of a 784-400-20 MLP step (~5 ms on 2 cores); 32 hides it. The NaN guard
# and the progress bar then see the loss every 32 steps, which is still well within an epoch.
STEPS_PER_EXECUTION = 32

# Validation is forward-only, so it can take bigger batches with fewer calls; the reported
# means are per example, so the batch size does not change the numbers.
MIN_VALIDATION_BATCH = 1024


@dataclass(frozen=True)
class SpeedSettings:
    device: str  # "cpu" or "gpu": what TensorFlow can see
    steps_per_execution: int
    jit_compile: bool  # XLA for the training step
    validation_batch_size: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def choose(config: Config, *, gpu: bool) -> SpeedSettings:
    """The settings a run uses: the Config's explicit values, else the per-device defaults."""
    return SpeedSettings(
        device="gpu" if gpu else "cpu",
        steps_per_execution=config.steps_per_execution or STEPS_PER_EXECUTION,
        jit_compile=_jit(config, gpu),
        validation_batch_size=max(config.batch_size, MIN_VALIDATION_BATCH),
    )


def _jit(config: Config, gpu: bool) -> bool:
    """XLA fuses the many small elementwise ops of a dense VAE and its Adam update (a large win
    on CPU), but its CPU convolutions are ~2x slower than oneDNN's, so conv models skip it on CPU.
    """
    if config.jit_compile != "auto":
        return config.jit_compile == "on"
    return gpu or config.arch == "mlp"
