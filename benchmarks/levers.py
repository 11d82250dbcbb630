"""The lever study: each speed lever switched on and off against the trainer's chosen settings.

    python benchmarks/levers.py                 # 8 epochs per variant (about 10 minutes on 2 cores)
    python benchmarks/levers.py --epochs 4 --json levers.json

Levers inside one process (fit level, epochs interleaved so load drifts hit every variant):
steps_per_execution, XLA, tf.data vs numpy into fit, the fused upsample-conv, mixed precision and
batch size. Per-epoch extras of the trainer: sample grid, best weights, TensorBoard, validation
batch. Levers that only take effect in a fresh process (thread pools, oneDNN) run as child
processes of this same script (`--child`), alternated and repeated.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/levers.py`: import this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks import measure  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchmarks.workloads import EpochTimer, steady_rate, tutorial_vae  # noqa: E402
from vae_cli.config import resolve  # noqa: E402
from vae_cli.data import make_tf_dataset, steps_per_epoch  # noqa: E402
from vae_cli.speed import choose as _choose, has_gpu  # noqa: E402


def choose(config, data):
    """The settings vae-train would use for this data on this machine."""
    return _choose(config, gpu=has_gpu(), epoch_steps=steps_per_epoch(len(data.x_train), config.batch_size))


def _vae_around(config, input_shape, decoder):
    """The project's encoder and loss layers around another decoder."""
    import keras

    from vae_cli.layers import ReconstructionLoss
    from vae_cli.models import build_encoder

    encoder = build_encoder(config, input_shape)
    x_in = keras.Input(shape=input_shape)
    x_hat = decoder(encoder(x_in)[2])
    return keras.Model(x_in, ReconstructionLoss(config.likelihood, config.recon_weight)([x_in, x_hat]))


def _plain_output_layer(layer):
    """clone_model hook: the decoder with a plain Conv2D where it has NarrowConv2D."""
    from keras import layers

    from vae_cli.layers import NarrowConv2D

    if isinstance(layer, NarrowConv2D):
        return layers.Conv2D(layer.filters, 3, padding="same", activation=layer.activation, name=layer.name)
    return layer.__class__.from_config(layer.get_config())


def _build(config, input_shape, decoder: str):
    import keras

    from vae_cli.models import build_decoder, build_vae

    if decoder == "tutorial":  # UpSampling2D + Conv2D, plain output Conv2D
        return _vae_around(config, input_shape, tutorial_vae(config, input_shape).decoder)
    if decoder == "plain output":
        plain = keras.models.clone_model(build_decoder(config, input_shape), clone_function=_plain_output_layer)
        return _vae_around(config, input_shape, plain)
    return build_vae(config, input_shape).vae


def _variant(config, data, *, spe, jit, numpy=False, decoder="ours", policy=None, batch=None):
    """A compiled model and a function that trains it one more epoch the way vae-train does
    (seeded epoch-keyed batches), or from numpy arrays the way the tutorial does."""
    import keras

    keras.utils.set_random_seed(0)
    if policy:
        keras.mixed_precision.set_global_policy(policy)
    try:
        model = _build(config, data.input_shape, decoder)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    batch = batch or config.batch_size
    steps = steps_per_epoch(len(data.x_train), batch)
    spe = _choose(dataclasses.replace(config, steps_per_execution=spe), gpu=False,
                  epoch_steps=steps).steps_per_execution  # never past an epoch's end
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), steps_per_execution=spe, jit_compile=jit)
    timer = EpochTimer()
    if numpy:
        def epoch(i):
            model.fit(data.x_train, batch_size=batch, epochs=i + 1, initial_epoch=i, verbose=0, callbacks=[timer])
    else:
        def epoch(i):
            batches, _ = data.epoch_batches(batch, seed=0, first_epoch=i, epochs=i + 1)
            model.fit(batches, epochs=i + 1, initial_epoch=i, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    return model, epoch, timer


def fit_levers(arch: str, data, epochs: int) -> list[dict]:
    config = resolve(arch, {})
    s = choose(config, data)
    chosen = {"spe": s.steps_per_execution, "jit": s.jit_compile}
    specs = {f"chosen (spe {s.steps_per_execution}, XLA {'on' if s.jit_compile else 'off'}, tf.data)": chosen,
             "steps_per_execution 1": {**chosen, "spe": 1},
             f"XLA {'off' if s.jit_compile else 'on'}": {**chosen, "jit": not s.jit_compile},
             "numpy arrays into fit": {**chosen, "numpy": True},
             "mixed precision": {**chosen, "policy": "mixed_float16" if s.device == "gpu" else "mixed_bfloat16"},
             "batch 256 (changes the optimisation)": {**chosen, "batch": 256}}
    if arch == "conv":
        specs["plain Conv2D output layer instead of NarrowConv2D"] = {**chosen, "decoder": "plain output"}
        specs["tutorial decoder layers (UpSampling2D + Conv2D, plain output)"] = {**chosen, "decoder": "tutorial"}
    runners, rows = {}, []
    for name, kw in specs.items():
        try:
            runners[name] = _variant(config, data, **kw)
        except Exception as e:  # a lever the backend cannot do is a result, not a crash
            rows.append({"arch": arch, "lever": name, "error": f"{type(e).__name__}: {str(e)[:150]}"})
    for i in range(epochs):
        for name, (_, epoch, _) in list(runners.items()):
            try:
                epoch(i)
            except Exception as e:
                rows.append({"arch": arch, "lever": name, "error": f"{type(e).__name__}: {str(e)[:150]}"})
                del runners[name]
    base = None
    for name, (_, _, timer) in runners.items():
        rate = steady_rate(len(data.x_train), timer.seconds)
        base = base or rate
        rows.append({"arch": arch, "lever": name, "samples_per_second": rate, "vs_chosen": rate / base,
                     "epoch_seconds": timer.seconds})
    return rows


def _median_ms(fn, repeats: int = 5) -> float:
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def per_epoch_costs(data, tmp) -> dict:
    """What each end-of-epoch extra of the trainer costs, on the conv preset."""
    import keras

    from vae_cli import plots
    from vae_cli.models import build_vae

    config = resolve("conv", {})
    models = build_vae(config, data.input_shape)
    s = choose(config, data)
    models.vae.compile(optimizer="adam", steps_per_execution=s.steps_per_execution, jit_compile=s.jit_compile)
    z = np.random.default_rng(0).standard_normal((64, config.latent_dim)).astype("float32")
    images = np.asarray(models.decoder(z, training=False))
    tensorboard = keras.callbacks.TensorBoard(str(tmp / "tb"), write_graph=False, profile_batch=0)
    tensorboard.set_model(models.vae)
    tensorboard.on_train_begin()
    val = {b: make_tf_dataset(data.x_val, batch_size=b, shuffle=False, seed=0) for b in (config.batch_size, 1024)}
    for ds in val.values():
        models.vae.evaluate(ds, verbose=0)
    costs = {
        "decode 64 fixed z": _median_ms(lambda i: np.asarray(models.decoder(z, training=False))),
        "sample grid as a matplotlib figure (before)": _median_ms(
            lambda i: plots.save_image_grid(images, tmp / f"grid{i}.png", title=f"epoch {i}")),
        "sample grid as a 3x PNG mosaic (now)": _median_ms(
            lambda i: plots.save_image(plots.tile_images(images).repeat(3, 0).repeat(3, 1), tmp / f"m{i}.png")),
        "best.weights.h5": _median_ms(lambda i: models.vae.save_weights(tmp / f"w{i}.weights.h5")),
        "TensorBoard epoch scalars": _median_ms(
            lambda i: tensorboard.on_epoch_end(i, {"loss": 1.0, "recon": 1.0, "kl": 1.0, "val_loss": 1.0})),
    }
    for b, ds in val.items():
        costs[f"validation of {len(data.x_val)} digits at batch {b}"] = _median_ms(
            lambda i, ds=ds: models.vae.evaluate(ds, verbose=0))
    tensorboard.on_train_end()
    return costs


# ---------------------------------------------------------------- settings that need a fresh process

PROCESS_VARIANTS = {
    "TensorFlow defaults": {},
    "inter-op threads 1": {"inter": 1},
    "intra-op threads 1": {"intra": 1},
    "oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)": {"onednn": False},
}


def process_levers(repeats: int = 2) -> list[dict]:
    rates: dict[str, list[dict]] = {name: [] for name in PROCESS_VARIANTS}
    for _ in range(repeats):
        for name, spec in PROCESS_VARIANTS.items():
            env = measure.child_env(**({"TF_ENABLE_ONEDNN_OPTS": "0"} if spec.get("onednn") is False else {}))
            child = measure.run_measured([sys.executable, __file__, "--child", json.dumps(spec)], env=env)
            rates[name].append(child.json_line())
    rows = []
    for name, runs in rates.items():
        for arch in ("mlp", "conv"):
            rows.append({"arch": arch, "lever": name, "samples_per_second": statistics.median(r[arch] for r in runs),
                         "runs": [r[arch] for r in runs]})
    base = {r["arch"]: r["samples_per_second"] for r in rows if r["lever"] == "TensorFlow defaults"}
    for r in rows:
        r["vs_chosen"] = r["samples_per_second"] / base[r["arch"]]
    return rows


def child_main(spec_json: str) -> int:
    """Inside a fresh process: apply thread settings, then time both presets' chosen settings."""
    import tensorflow as tf

    from vae_cli.data import load_dataset

    spec = json.loads(spec_json)
    if "inter" in spec:
        tf.config.threading.set_inter_op_parallelism_threads(spec["inter"])
    if "intra" in spec:
        tf.config.threading.set_intra_op_parallelism_threads(spec["intra"])
    data = load_dataset("mnist-5k", validation_split=0.1, seed=0)
    out = {}
    for arch in ("mlp", "conv"):
        config = resolve(arch, {})
        s = choose(config, data)
        _, epoch, timer = _variant(config, data, spe=s.steps_per_execution, jit=s.jit_compile)
        for i in range(4):
            epoch(i)
        out[arch] = steady_rate(len(data.x_train), timer.seconds)
    print(json.dumps(out))
    return 0


def run_levers(data, epochs: int, tmp) -> dict:
    print("[levers] fit-level variants, per-epoch costs, then 8 child processes", file=sys.stderr, flush=True)
    return {"fit": fit_levers("mlp", data, epochs) + fit_levers("conv", data, epochs),
            "per_epoch_ms": per_epoch_costs(data, tmp), "process": process_levers(),
            "load_average": measure.load_average()}


def format_levers(levers: dict) -> str:
    lines = ["| arch | lever | samples/s | vs chosen |", "|---|---|---|---|"]
    for r in levers["fit"] + levers["process"]:
        if "error" in r:
            lines.append(f"| {r['arch']} | {r['lever']} | failed: {r['error']} | - |")
        else:
            lines.append(f"| {r['arch']} | {r['lever']} | {r['samples_per_second']:,.0f} | {r['vs_chosen']:.2f}x |")
    lines += ["", "| per-epoch extra (conv preset) | ms |", "|---|---|"]
    lines += [f"| {name} | {ms:.1f} |" for name, ms in levers["per_epoch_ms"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/levers.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8, help="epochs per fit-level variant, >= 3 (default: 8)")
    parser.add_argument("--json", default="levers.json", help="where to write the results (default: levers.json)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the settings that need a fresh process
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child)
    if args.epochs < 3:
        parser.error("--epochs: expected an integer >= 3 (the first epoch is left out)")
    folder = Path(args.json).expanduser().absolute().parent
    if not (folder.is_dir() and os.access(folder, os.W_OK)):  # checked before minutes of work
        parser.error(f"--json: cannot write into {folder}; give a file in an existing, writable folder")
    from vae_cli.data import load_dataset

    data = load_dataset("mnist-5k", validation_split=0.1, seed=0)
    results = {"machine": measure.machine(), "load_average_start": measure.load_average(), "epochs": args.epochs,
               "data": f"{len(data.x_train):,} MNIST digits ({data.source}), batch 128"}
    with tempfile.TemporaryDirectory(prefix="vae-levers-") as tmp:
        results["levers"] = run_levers(data, args.epochs, Path(tmp))
    print(format_levers(results["levers"]))
    Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
