"""A run's encoder and decoder as files that need Keras, TensorFlow, LiteRT or ONNX Runtime only,
never vae-cli: what vae-export writes.

Layout of the output folder (built in a hidden folder beside it and renamed into place, so it
holds a complete export or nothing; it must be new or empty):

    encoder.keras, decoder.keras     --format keras: keras.models.load_model(path)
    encoder/, decoder/               --format savedmodel: tf.saved_model.load(path)
    encoder.tflite, decoder.tflite   --format tflite: a LiteRT interpreter's signature runner
    encoder.onnx, decoder.onnx       --format onnx: onnxruntime.InferenceSession(path)
    export.json                      inputs and outputs of each file, and the check below

Every exported model is built from stock Keras layers. The encoder maps x [+ label] to z_mean and
z_log_var; the Sampling layer (it draws z and adds the KL loss while training) is left out, so
draw z = z_mean + exp(z_log_var / 2) * eps yourself. The decoder maps z [+ label] to x_hat (and
x_log_var for gaussian-learned runs). The conv decoder's fused layers become stock layers that
compute the same function: an UpsampleConv2D is a stride-2 Conv2DTranspose given the 4x4 kernel
it computes itself (a pair of UpSampling2D + Conv2D stages would need TensorFlow ops that LiteRT's
built-in set lacks), a NarrowConv2D a Conv2D(C, 3, "same").

Keras files keep the models' list outputs ([z_mean, z_log_var]); the other formats name them
(z_mean, z_log_var, x_hat, x_log_var) and name the inputs x, z and label. Before the rename every
file is loaded back and run on a seeded batch next to the run's own models; a difference above
TOLERANCE fails the export with nothing written.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import warnings
from pathlib import Path

import numpy as np

from .atomic import atomic_folder
from .data import one_hot
from .errors import TrainingFailed, UsageError, first_line
from .run import Run, check_can_create

FORMATS = ("keras", "savedmodel", "tflite", "onnx")
PARTS = ("encoder", "decoder", "both")
MANIFEST_FILE = "export.json"
# Largest |exported - run| accepted when the export checks itself: float32 round-off through the
# stock layers stayed below 4e-6 in every format (tests/test_export.py); a wrong conversion is
# off by far more.
TOLERANCE = 1e-4
CHECK_BATCH = 8
_SUFFIXES = {"keras": ".keras", "savedmodel": "", "tflite": ".tflite", "onnx": ".onnx"}
_KERAS_FORMATS = {"savedmodel": "tf_saved_model", "tflite": "litert", "onnx": "onnx"}
_ONNX_PACKAGES = ("tf2onnx", "onnx")


def check_format_available(fmt: str) -> None:
    """Refuse, before any work, a format whose converter is not installed."""
    if fmt == "onnx" and any(importlib.util.find_spec(name) is None for name in _ONNX_PACKAGES):
        raise UsageError("--format onnx needs the tf2onnx converter, which is not installed; run "
                         "pip install 'vae-cli[onnx]' (or pip install tf2onnx onnxruntime), or pick "
                         "--format keras, savedmodel or tflite")


def check_out_folder(out: str) -> Path:
    """Refuse, before any work, an --out that exists and is not an empty folder, or cannot be made."""
    path = Path(out).expanduser()
    check_can_create(path)
    if path.is_dir() and any(path.iterdir()):
        raise UsageError(f"--out: {path} already holds files; vae-export writes only into a new or empty "
                         "folder so nothing is overwritten; pick another --out")
    return path


def parts_of(part: str) -> tuple[str, ...]:
    return ("encoder", "decoder") if part == "both" else (part,)


# --------------------------------------------------------------------------------------------
# stock-layer models


def stock_encoder(encoder):
    """x [+ label] -> [z_mean, z_log_var]: the run's encoder up to its Sampling layer."""
    import keras

    outputs = [encoder.get_layer("z_mean").output, encoder.get_layer("z_log_var").output]
    return _checked_stock(keras.Model(encoder.inputs, outputs, name="encoder"))


def stock_decoder(decoder):
    """The run's decoder with each fused layer replaced by the stock layer computing the same
    function, holding the same weights (an UpsampleConv2D's as its 4x4 transposed kernel)."""
    import keras

    from .layers import NarrowConv2D, UpsampleConv2D

    def stock(layer):
        if isinstance(layer, UpsampleConv2D):
            return keras.layers.Conv2DTranspose(layer.filters, 4, strides=2, padding="same",
                                                activation=layer.activation, name=layer.name)
        if isinstance(layer, NarrowConv2D):
            return keras.layers.Conv2D(layer.filters, 3, padding="same", activation=layer.activation,
                                       name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    model = keras.models.clone_model(decoder, clone_function=stock)
    for layer in decoder.layers:
        if not layer.weights:
            continue
        weights = layer.get_weights()
        if isinstance(layer, UpsampleConv2D):
            weights[0] = keras.ops.convert_to_numpy(layer.transposed_kernel())
        model.get_layer(layer.name).set_weights(weights)
    return _checked_stock(model)


def _checked_stock(model):
    custom = [type(layer).__name__ for layer in model.layers if not type(layer).__module__.startswith("keras.")]
    if custom:  # a new custom layer in models.py needs its stock equivalent here
        raise RuntimeError(f"no stock Keras equivalent for layers {custom} of the {model.name}")
    return model


def _named_outputs(model):
    """The same model with its outputs in a dict keyed by their layer names (z_mean, x_hat, ...),
    so SavedModel, LiteRT and ONNX signatures name them instead of output_0, output_1."""
    import keras

    named = keras.Model(model.inputs, dict(zip(model.output_names, model.outputs)), name=model.name)
    named([np.zeros((1, *t.shape[1:]), np.float32) for t in model.inputs])  # onnx export wants a called model
    return named


def io_names(model) -> tuple[list[str], list[str]]:
    """(input names, output names) of a functional model: x/z [, label] and its output layers."""
    return [t.name for t in model.inputs], list(model.output_names)


# --------------------------------------------------------------------------------------------
# writing and reading back


def write_model(model, fmt: str, path: Path) -> None:
    """One stock model in one format at path (a file, or a folder for a SavedModel)."""
    if fmt == "keras":
        model.save(path)
        return
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # converters' chatter
        warnings.simplefilter("ignore")
        try:
            _named_outputs(model).export(str(path), format=_KERAS_FORMATS[fmt], verbose=False)
        except ImportError as e:  # a converter found by check_format_available that fails to import
            raise UsageError(f"--format {fmt}: the converter failed to import ({first_line(e)}); reinstall "
                             "it with pip install 'vae-cli[onnx]'") from None


def _tflite_interpreter(path: Path):
    """LiteRT's own interpreter when installed, else the copy inside TensorFlow."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=str(path))


def run_exported(fmt: str, path: Path, inputs: dict[str, np.ndarray], output_names: list[str]):
    """Load an exported file the way its users will and run it: {output name: array}, or None for
    onnx when onnxruntime is not installed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        if fmt == "keras":
            import keras

            model = keras.models.load_model(path)  # safe_mode: a file of stock layers needs nothing else
            feed = [inputs[name] for name in io_names(model)[0]]
            out = model(feed[0] if len(feed) == 1 else feed, training=False)
            return dict(zip(output_names, (np.asarray(o) for o in keras.tree.flatten(out))))
        if fmt == "savedmodel":
            import tensorflow as tf

            serve = tf.saved_model.load(str(path)).signatures["serving_default"]
            return {k: v.numpy() for k, v in serve(**{k: tf.constant(v) for k, v in inputs.items()}).items()}
        if fmt == "tflite":
            return dict(_tflite_interpreter(path).get_signature_runner()(**inputs))
        try:
            import onnxruntime
        except ImportError:
            return None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))


def check_inputs(run: Run, part: str, *, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded batch for one part: images in [0, 1] or z ~ N(0, I), and one-hot labels cycling
    through the classes for a conditional run."""
    rng = np.random.default_rng(seed)
    if part == "encoder":
        inputs = {"x": rng.random((CHECK_BATCH, *run.input_shape), dtype=np.float32)}
    else:
        inputs = {"z": rng.standard_normal((CHECK_BATCH, run.config.latent_dim)).astype(np.float32)}
    if run.conditional:
        inputs["label"] = one_hot(np.arange(CHECK_BATCH) % run.num_classes, run.num_classes)
    return inputs


def run_outputs(run: Run, part: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the run's own (fused) models give for the batch, keyed by the exported output names."""
    import keras

    model = run.encoder if part == "encoder" else run.decoder
    feed = [inputs[t.name] for t in model.inputs]
    out = keras.tree.flatten(model(feed[0] if len(feed) == 1 else feed, training=False))
    names = ["z_mean", "z_log_var"] if part == "encoder" else list(model.output_names)
    return {name: np.asarray(o) for name, o in zip(names, out)}


def max_difference(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    if set(got) != set(want):
        raise TrainingFailed(f"the exported model returns {sorted(got)} instead of {sorted(want)}; nothing "
                             "was written")
    return max(float(np.max(np.abs(np.asarray(got[k], np.float64) - want[k]))) for k in want)


# --------------------------------------------------------------------------------------------
# the command's work


def export_run(run: Run, fmt: str, part: str, out: Path) -> dict:
    """Write the run's chosen parts in one format into the new folder `out`, check each file
    against the run's models, and return the manifest (also written as out/export.json)."""
    from . import __version__

    builders = {"encoder": lambda: stock_encoder(run.encoder), "decoder": lambda: stock_decoder(run.decoder)}
    manifest = {"format": fmt, "vae_cli_version": __version__, "run": run.path.name,
                "input_shape": list(run.input_shape), "latent_dim": run.config.latent_dim,
                "num_classes": run.num_classes, "likelihood": run.config.likelihood,
                "tolerance": TOLERANCE}
    with atomic_folder(out) as folder:
        for name in parts_of(part):
            model = builders[name]()
            file = f"{name}{_SUFFIXES[fmt]}"
            write_model(model, fmt, folder / file)
            outputs = io_names(model)[1]
            inputs = check_inputs(run, name)
            result = run_exported(fmt, folder / file, inputs, outputs)
            diff = None if result is None else max_difference(result, run_outputs(run, name, inputs))
            if diff is not None and not diff <= TOLERANCE:
                raise TrainingFailed(f"the exported {name} differs from the run's by up to {diff:.3g} "
                                     f"(more than {TOLERANCE:g}); nothing was written")
            manifest[name] = {
                "file": file,
                "inputs": {t.name: [None, *t.shape[1:]] for t in model.inputs},
                "outputs": {n: [None, *t.shape[1:]] for n, t in zip(outputs, model.outputs)},
                "max_abs_difference": diff,  # None: not checked (onnxruntime not installed)
            }
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
