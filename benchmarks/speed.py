"""vae-cli's speed inside one process (issue 4): the trainer's training batches against the
tutorial's at the same architecture, the 30x30 manifold against the per-point loop, start-up and
argument errors, and the fraction of the machine's matmul peak each training workload reaches.

    python benchmarks/speed.py             # 8 epochs per training measurement (~5 min on 2 cores)
    python benchmarks/speed.py --quick     # 4 epochs, manifold loop timed on 30 points (< 2 min)

The PyTorch row needs `pip install torch==2.13.0` (it says "skipped" without).

Training speeds are medians of repeated epochs (the first, which traces, is left out) and the
training comparisons are ratios taken inside this one process. Those in-process ratios are not
the fair comparison: benchmarks/fair.py runs every side, and the end-to-end race with peak RSS,
as its own fresh process, repeated and interleaved. The table is printed and everything
(per-epoch times included) goes to --json. Not part of the test suite: timings are never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/speed.py`: import this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import measure  # noqa: E402
from benchmarks.speed_table import TARGETS, format_table, markdown_report  # noqa: E402

MANIFOLD_N = 30


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks/speed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and manifold points (< 2 minutes)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per training measurement (default: 8, --quick: 4)")
    parser.add_argument("--json", default="bench.json", help="where to write the results (default: bench.json)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown, ready for the README")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.epochs is not None and args.epochs < 3:
        build_parser().error("--epochs: expected an integer >= 3 (the first epoch is left out)")
    for flag, path in (("--json", args.json), ("--markdown", args.markdown)):
        folder = Path(path or ".").expanduser().absolute().parent
        if path and not (folder.is_dir() and os.access(folder, os.W_OK)):  # checked before minutes of work
            build_parser().error(f"{flag}: cannot write into {folder}; give a file in an existing, writable folder")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as the commands start TensorFlow
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    results = run_benchmark(args)
    print(format_table(results))
    Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"\nwrote {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(markdown_report(results, _command(args)), encoding="utf-8")
        print(f"wrote {args.markdown} (paste it into README.md as it is)")
    return 0


def _command(args) -> str:
    """This run's measuring flags (not where it wrote its files), as the README quotes them."""
    flags = ["--quick"] if args.quick else []
    if args.epochs is not None:
        flags.append(f"--epochs {args.epochs}")
    return " ".join(["python benchmarks/speed.py", *flags])


# ---------------------------------------------------------------- the measurements


def run_benchmark(args) -> dict:
    from benchmarks.workloads import matmul_peak_gflops, torch_version
    from vae_cli.data import load_dataset
    from vae_cli.speed import has_gpu

    epochs = args.epochs or (4 if args.quick else 8)
    data = load_dataset("mnist-5k", validation_split=0.1, seed=0)
    res: dict = {"machine": {"cpu": measure.cpu_name(), "cores": os.cpu_count(), "gpu": has_gpu(),
                             "load_average_start": measure.load_average(), "python": platform.python_version(),
                             "torch": torch_version()},
                 "data": f"{len(data.x_train):,} MNIST digits ({data.source}), batch 128",
                 "epochs": epochs, "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="vae-speed-") as tmp:
        tmp = Path(tmp)
        res["startup"] = cli_latency()
        peaks = [matmul_peak_gflops()]
        for label, preset, overrides in (("mlp", "mlp", {}), ("conv", "conv", {}),
                                         ("mlp400", "mlp", {"hidden_dim": 400, "latent_dim": 20})):
            res[label] = compare_trainer(label, preset, overrides, data, epochs, tmp)
            _progress(f"{label}: {res[label]['ours_train']:,.0f} vs tutorial {res[label]['tutorial']:,.0f} samples/s")
        res["mlp400"]["torch"] = torch_rate(res["mlp400"]["config"], data.x_train, epochs)
        res["manifold"] = manifold_race(res["conv"].pop("run_path"), tmp, 30 if args.quick else 100)
        for label in ("mlp", "mlp400"):
            res[label].pop("run_path")
    peaks.append(matmul_peak_gflops())  # the best of two, so one busy moment does not set the peak
    res["matmul_peak_gflops_measured"], res["matmul_peak_gflops"] = peaks, max(peaks)
    res["machine"]["load_average_end"] = measure.load_average()
    res["flops"] = flop_fractions(res)
    res["targets"] = check_targets(res)
    return res


def _progress(message: str) -> None:
    print(f"[speed] {message}", file=sys.stderr, flush=True)


def compare_trainer(label, preset, overrides, data, epochs, tmp) -> dict:
    """The project's trainer (every callback, validation included) against the tutorial VAE at the
    same architecture, run before and after it so drifting machine load hits both."""
    from benchmarks.workloads import EpochTimer, steady_rate, training_flops, tutorial_vae
    from vae_cli.config import resolve
    from vae_cli.models import build_vae

    config = resolve(preset, {**overrides, "epochs": epochs, "dataset": "mnist-5k", "name": label,
                              "out": str(tmp)})
    x = data.x_train
    tutorial, timer = tutorial_vae(config, data.input_shape), EpochTimer()
    first_half = max(2, epochs // 2 + 1)
    tutorial.fit(x, batch_size=config.batch_size, epochs=first_half, verbose=0, callbacks=[timer])
    metrics, run_path = train_quietly(config, data)
    tutorial.fit(x, batch_size=config.batch_size, epochs=epochs + 1 - first_half, verbose=0, callbacks=[timer])
    ours_flops = training_flops(build_vae(config, data.input_shape).vae)
    tutorial_flops = training_flops(tutorial.encoder) + training_flops(tutorial.decoder)
    assert ours_flops == tutorial_flops, "the baseline must have the project's architecture"
    return {
        "config": config.to_dict(), "run_path": str(run_path), "train_flops_per_sample": ours_flops,
        "ours_train": metrics["train_samples_per_second"], "ours_epoch": metrics["epoch_samples_per_second"],
        "ours_train_seconds": metrics["train_seconds"], "ours_epoch_seconds": metrics["epoch_seconds"],
        "speed_settings": metrics["speed"],
        "tutorial": steady_rate(len(x), timer.seconds), "tutorial_epoch_seconds": timer.seconds,
        "ratio": metrics["train_samples_per_second"] / steady_rate(len(x), timer.seconds),
    }


def train_quietly(config, data):
    from vae_cli.run import RunDir
    from vae_cli.trainer import train

    run = RunDir.create(config.out, config.run_name)
    with contextlib.redirect_stdout(io.StringIO()):
        result = train(config, data, run, log=lambda *_: None)
    return result.metrics, run.path


def torch_rate(config_dict: dict, x, epochs: int) -> dict:
    from benchmarks.workloads import steady_rate, torch_mlp_epochs, torch_version
    from vae_cli.config import Config

    if torch_version() is None:
        return {"skipped": "torch is not installed (pip install torch==2.13.0)"}
    seconds = torch_mlp_epochs(Config(**{**config_dict, "conv_filters": tuple(config_dict["conv_filters"])}),
                               x, epochs)
    return {"samples_per_second": steady_rate(len(x), seconds), "epoch_seconds": seconds}


def manifold_race(run_path: str, tmp: Path, per_point_calls: int) -> dict:
    """The tutorial's per-point `predict` loop (timed on `per_point_calls` points, extrapolated to
    all 900) plus its imshow figure, against latent.manifold + plots.plot_manifold."""
    import matplotlib.pyplot as plt
    import numpy as np

    from vae_cli import latent, plots
    from vae_cli.run import load_run

    decoder = load_run(run_path).decoder
    z = np.stack(np.meshgrid(latent.latent_grid(MANIFOLD_N, 4.0), latent.latent_grid(MANIFOLD_N, 4.0)),
                 -1).reshape(-1, 2)
    decoder.predict(z[:1], verbose=0)  # the loop pays its one-time setup once in 900 calls
    t0 = time.perf_counter()
    for point in z[:per_point_calls]:
        decoder.predict(point[None], verbose=0)
    per_point = (time.perf_counter() - t0) / per_point_calls
    t0 = time.perf_counter()
    plt.figure(figsize=(15, 15))
    plt.imshow(np.zeros((28 * MANIFOLD_N, 28 * MANIFOLD_N)), cmap="Greys_r")
    plt.savefig(tmp / "tutorial-manifold.png")
    plt.close()
    loop_seconds = per_point * len(z) + time.perf_counter() - t0
    ours = []
    for _ in range(3):
        t0 = time.perf_counter()
        images, gx, gy = latent.manifold(decoder, 2, n=MANIFOLD_N)
        plots.plot_manifold(images, gx, gy, tmp / "manifold.png")
        ours.append(time.perf_counter() - t0)
    return {"per_point_loop_seconds": loop_seconds, "per_point_calls_timed": per_point_calls,
            "ours_seconds": statistics.median(ours), "speedup": loop_seconds / statistics.median(ours)}


def cli_latency(repeats: int = 3) -> dict:
    """Wall time of `vae-train --help` and of two argument errors, each a fresh interpreter."""
    cases = {"help": ["--help"], "arg_error_argparse": ["--arch", "resnet"],
             "arg_error_config": ["--epochs", "0"]}
    return {name: statistics.median(
        measure.run_measured([sys.executable, "-m", "vae_cli.cli.train", *args], env=measure.child_env(),
                             check=False).seconds for _ in range(repeats)) for name, args in cases.items()}


def flop_fractions(res: dict) -> list[dict]:
    peak = res["matmul_peak_gflops"]
    rows = []
    for label in ("mlp", "conv", "mlp400"):
        r = res[label]
        rates = {"vae-cli": r["ours_train"], "tutorial Keras": r["tutorial"]}
        if "samples_per_second" in r.get("torch", {}):
            rates["PyTorch eager"] = r["torch"]["samples_per_second"]
        for who, rate in rates.items():
            gflops = rate * r["train_flops_per_sample"] / 1e9
            rows.append({"workload": label, "who": who, "samples_per_second": rate,
                         "train_mflop_per_sample": r["train_flops_per_sample"] / 1e6,
                         "gflops": gflops, "fraction_of_peak": gflops / peak})
    return rows


def _measured(res: dict) -> dict:
    m = {"mlp_vs_tutorial": res["mlp"]["ratio"], "conv_vs_tutorial": res["conv"]["ratio"],
         "manifold_speedup": res["manifold"]["speedup"], "help_seconds": res["startup"]["help"],
         "arg_error_seconds": max(res["startup"]["arg_error_argparse"], res["startup"]["arg_error_config"])}
    torch = res["mlp400"]["torch"]
    if "samples_per_second" in torch:
        m["mlp400_vs_torch"] = res["mlp400"]["ours_train"] / torch["samples_per_second"]
    return m


def check_targets(res: dict) -> dict:
    out = {}
    for key, value in _measured(res).items():
        target, higher = TARGETS[key]
        out[key] = {"value": value, "target": target, "met": value >= target if higher else value <= target}
    return out


if __name__ == "__main__":
    sys.exit(main())
