"""The Keras engine a run trains on (TensorFlow or JAX): choosing it, setting it, asking it.

Keras picks its engine once, when it is first imported, from KERAS_BACKEND, so the choice is
made and set here before anything imports Keras; a process that already imported Keras on
another engine cannot switch, and is refused in one line. `auto` keeps an engine already
chosen (Keras imported, or KERAS_BACKEND set), else picks the one measured faster for the device
and architecture (MEASURED below); a device or architecture without a measurement gets
TensorFlow, the engine every feature was first built on.

Everything after the choice asks this module about the engine (devices, versions, whether an
error means out of memory), so no other module needs to know which engine runs. Importing it
imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

ENGINES = ("tensorflow", "jax")
BACKENDS = ("auto", *ENGINES)
PRECISIONS = ("float32", "mixed")
DEFAULT_ENGINE = "tensorflow"

# Whole-epoch samples/s of `vae-train --preset mlp|conv (--arch strided)` per (device, arch) and
# engine: metrics.json's epoch_samples_per_second, median of 2 interleaved fresh processes each, on
# the bundled digits at batch 128, measured by `python benchmarks/gpu.py --archs mlp,conv,strided
# --precisions float32 --rounds 2` (load average 1.3-1.4 from other jobs). Only a (device, arch)
# listed here is chosen by measurement; add a GPU's rows from the same script run on a GPU.
MEASURED_SOURCE = "benchmarks/gpu.py on a 2-core AVX512 CPU, 2026-11-29"
MEASURED = {
    ("cpu", "mlp"): {"jax": 40_210.0, "tensorflow": 25_370.0},
    ("cpu", "conv"): {"jax": 1_010.0, "tensorflow": 3_640.0},
    ("cpu", "strided"): {"jax": 520.0, "tensorflow": 4_200.0},
}


@dataclass(frozen=True)
class Engine:
    name: str  # "tensorflow" or "jax"
    reason: str  # why: "requested", or what auto measured

    def describe(self) -> str:
        return f"{self.name} ({self.reason})"


def gpu_visible() -> bool:
    """Whether an NVIDIA GPU is visible, asked without importing an engine (the choice comes first):
    CUDA_VISIBLE_DEVICES empty or -1 hides every GPU; otherwise the driver lists its GPUs."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists()


def imported_engine() -> str | None:
    """The engine of the Keras already imported in this process, or None when none is."""
    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else None


_activated: Engine | None = None  # the engine `activate` set in this process


def choose(requested: str, arch: str, *, gpu: bool) -> Engine:
    """The engine for --backend `requested`: itself; for auto, the engine of a Keras already
    imported in this process, else the one KERAS_BACKEND names, else the measured faster one."""
    if requested != "auto":
        return Engine(requested, "requested")
    already = imported_engine()
    if _activated is not None and _activated.name == (already or os.environ.get("KERAS_BACKEND")):
        return _activated  # chosen earlier in this process, for this run
    if already is not None:
        return Engine(already, f"auto: Keras was already imported on {already} in this process")
    named = os.environ.get("KERAS_BACKEND")
    if named in ENGINES:
        return Engine(named, f"auto: KERAS_BACKEND={named} is set")
    device = "gpu" if gpu else "cpu"
    rates = MEASURED.get((device, arch))
    if not rates:
        return Engine(DEFAULT_ENGINE, f"auto: {arch} on {device.upper()} is unmeasured, so the default")
    fastest, slowest = sorted(rates, key=rates.get, reverse=True)
    return Engine(fastest, f"auto: {arch} on {device.upper()} measured {rates[fastest] / rates[slowest]:.1f}x "
                           f"{slowest}, {MEASURED_SOURCE}")


def activate(engine: Engine) -> None:
    """Make `engine` the one Keras imports; refuse when Keras already runs on another one."""
    global _activated
    already = imported_engine()
    if already is None:
        os.environ["KERAS_BACKEND"] = engine.name
    elif already != engine.name:
        raise UsageError(f"--backend {engine.name}: Keras is already imported on {already} in this process "
                         f"and cannot switch; use --backend {already}, or start a new process")
    _activated = engine


# TensorFlow's start-up chatter, printed on a machine without a GPU before any logging is set up
# (so TF_CPP_MIN_LOG_LEVEL cannot hide it) and by CUDA stubs of a CPU-only or GPU build.
STARTUP_NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "rebuild TensorFlow with the appropriate compiler flags",
    "TF-TRT Warning: Could not find TensorRT",
)


def drop_startup_noise(text: str) -> str:
    """The lines of `text` that are not TensorFlow start-up noise (see STARTUP_NOISE)."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not any(noise in line for noise in STARTUP_NOISE))


@contextlib.contextmanager
def startup_noise_dropped():
    """Catch what is written to file descriptor 2 inside the block (C++ libraries write there
    directly); afterwards write all but the start-up noise to stderr."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to keep quiet
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = drop_startup_noise(caught.read().decode("utf-8", "replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


_tensorflow_started = False  # import_tensorflow has imported TensorFlow and probed its devices


def import_tensorflow():
    """TensorFlow, imported and started the first time with its start-up chatter dropped: the
    commands' quiet start-up (cli.common.quiet_tensorflow) and, on the JAX engine, whatever needs
    it later (image folders, tf.data in the data modules) import it through here."""
    global _tensorflow_started
    if not _tensorflow_started:
        with startup_noise_dropped():
            import tensorflow as tf

            tf.config.list_physical_devices()  # CUDA's probe logs here, not at import
        _tensorflow_started = True
    import tensorflow as tf

    return tf


# ---------------------------------------------------------------- after Keras is imported


def current() -> str:
    import keras

    return keras.backend.backend()


def devices() -> list[str]:
    """The engine's devices, e.g. ["CPU:/device:CPU:0"] or ["cpu:TFRT_CPU_0"]."""
    if current() == "jax":
        import jax

        return [f"{d.platform}:{d}" for d in jax.devices()]
    import tensorflow as tf

    return [f"{d.device_type}:{d.name}" for d in tf.config.list_logical_devices()]


def has_gpu() -> bool:
    if current() == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is the engine saying a device ran out of memory."""
    if isinstance(error, MemoryError):
        return True
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        if isinstance(error, tf.errors.ResourceExhaustedError):
            return True
    return type(error).__name__ == "XlaRuntimeError" and "RESOURCE_EXHAUSTED" in str(error)


@contextlib.contextmanager
def tensorflow_hidden(hide: bool = True):
    """Keras answers "is TensorFlow installed?" by importing it (~4 s), on any engine, in
    set_random_seed and while it serialises a model, to handle TensorFlow objects. In a process
    that has not imported TensorFlow there are none, so with `hide` (a JAX run on arrays in
    memory) the import fails at once inside this block and Keras takes TensorFlow as absent and
    remembers that answer (keras.src.utils.module_utils.LazyModule.available), so saving the
    models later imports nothing either. Keep the block small: other Keras code asks whether
    "tensorflow" is in sys.modules and then imports it. TensorFlow imports normally after it."""
    if not hide or "tensorflow" in sys.modules:
        yield
        return
    sys.modules["tensorflow"] = None  # makes `import tensorflow` raise ImportError at once
    try:
        yield
    finally:
        if sys.modules.get("tensorflow", 0) is None:
            del sys.modules["tensorflow"]


def versions() -> dict[str, str]:
    """Versions of Keras and of the engine it runs on (the other engine is not imported)."""
    import keras

    engine = current()
    module = sys.modules.get(engine) or __import__(engine)
    return {"keras": keras.__version__, engine: module.__version__}


def compiled(fn, *models, tf_function: bool = True):
    """fn(*calls, *args) as one compiled function of the engine, where calls[i](inputs) runs
    models[i] for inference (training=False): jax.jit with the models' current weights passed as
    arguments (so later weight updates are seen; random layers draw the same noise on every
    call), a tf.function (unless not tf_function: op by op, which has no tracing cost), or op by
    op on another engine. Models are held weakly."""
    refs = [weakref.ref(m) for m in models]
    if current() == "jax":
        import jax

        def stateless(model, variables):
            return lambda inputs: model.stateless_call(*variables, inputs, training=False)[0]

        @jax.jit
        def run(variables, *args):
            return fn(*(stateless(r(), v) for r, v in zip(refs, variables)), *args)

        def call(*args):
            variables = [([v.value for v in m.trainable_variables], [v.value for v in m.non_trainable_variables])
                         for m in (r() for r in refs)]
            return run(variables, *args)
        return call

    def direct(*args):
        return fn(*(lambda inputs, m=r(): m(inputs, training=False) for r in refs), *args)
    if current() == "tensorflow" and tf_function:
        import tensorflow as tf

        return tf.function(direct, reduce_retracing=True)
    return direct


_predictors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def predict(model, inputs, batch_size: int):
    """model(inputs, training=False) as numpy, in batches of batch_size, without predict()'s
    per-call set-up (~0.3 s). On JAX one compiled call per model serves every batch: a short last
    batch is padded to batch_size (each example's outputs depend on it alone), so no new input
    shape compiles again; op by op, every new shape would compile each operation."""
    import numpy as np
    from keras import tree

    if model not in _predictors:
        _predictors[model] = compiled(lambda call, x: call(x), model, tf_function=False)
    run, pad = _predictors[model], current() == "jax"
    n = len(tree.flatten(inputs)[0])
    parts = []
    for start in range(0, n, batch_size):
        chunk = tree.map_structure(lambda a: np.asarray(a[start:start + batch_size]), inputs)
        rows = min(batch_size, n - start)
        if pad and rows < batch_size:
            chunk = tree.map_structure(lambda a: np.concatenate([a, np.zeros((batch_size - rows, *a.shape[1:]),
                                                                             a.dtype)]), chunk)
        parts.append(tree.map_structure(lambda a: np.asarray(a)[:rows], run(chunk)))
    return tree.map_structure(lambda *a: np.concatenate(a), *parts)


def dtype_policy(precision: str, gpu: bool) -> str:
    """Keras dtype policy of --precision: float16 on a GPU (with loss scaling), bfloat16 on a CPU
    (its range needs no loss scaling; this 2-core AVX512 CPU without AMX runs it slower than
    float32, so it is there for machines where it wins); float32 unchanged."""
    if precision == "float32":
        return "float32"
    return "mixed_float16" if gpu else "mixed_bfloat16"
