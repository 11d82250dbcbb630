"""vae-cli's own speed, with nothing from another framework: the training rate of `vae-train`'s
presets and the fraction of the machine's matmul peak it reaches, the 30x30 manifold against the
tutorial's per-point loop, and argument errors.

    python benchmarks/speed.py             # 8 epochs per preset, manifold loop timed on 100 points
    python benchmarks/speed.py --quick     # 4 epochs, manifold loop timed on 30 points

Comparisons with other programs (tutorial Keras on TensorFlow and JAX, PyTorch eager, the
tutorial script end to end with peak RSS, `vae-train --help`) are benchmarks/fair.py's: each side
its own fresh process, repeated and interleaved. Here each preset trains as the real `vae-train`
command in a fresh process (its automatic engine and settings) and its training-batch samples/s
come from the run's metrics.json (medians of epochs 2..N; the first traces). The manifold race
times two ways of calling the same decoder in this one process (a `predict` per point against
vae-cli's batched decode plus its figure): one framework, one model, so sharing a process is fair.
Argument errors are each a fresh interpreter. The table is printed and everything goes to --json.
Not part of the test suite: timings are never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
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
PRESETS = ("mlp", "conv")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks/speed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and manifold points")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per preset (default: 8, --quick: 4)")
    parser.add_argument("--json", default="bench.json", help="where to write the results (default: bench.json)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown, ready for the docs")
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
    results = run_benchmark(args)
    print(format_table(results))
    Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"\nwrote {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(markdown_report(results, _command(args)), encoding="utf-8")
        print(f"wrote {args.markdown}")
    return 0


def _command(args) -> str:
    """This run's measuring flags (not where it wrote its files), as the docs quote them."""
    flags = ["--quick"] if args.quick else []
    if args.epochs is not None:
        flags.append(f"--epochs {args.epochs}")
    return " ".join(["python benchmarks/speed.py", *flags])


# ---------------------------------------------------------------- the measurements


def run_benchmark(args) -> dict:
    from benchmarks.workloads import matmul_peak_gflops

    epochs = args.epochs or (4 if args.quick else 8)
    res: dict = {"machine": {**measure.machine(), "load_average_start": measure.load_average()},
                 "epochs": epochs, "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="vae-speed-") as tmp:
        tmp = Path(tmp)
        res["startup"] = cli_latency()
        peaks = [matmul_peak_gflops()]
        for preset in PRESETS:
            res[preset] = train_preset(preset, epochs, tmp / preset)
            _progress(f"{preset}: {res[preset]['train_samples_per_second']:,.0f} samples/s "
                      f"({res[preset]['backend']})")
        res["manifold"] = manifold_race(res["conv"].pop("run_path"), tmp, 30 if args.quick else 100)
        _progress(f"manifold: {res['manifold']['speedup']:.0f}x the per-point loop")
        res["mlp"].pop("run_path")
    peaks.append(matmul_peak_gflops())  # the best of two, so one busy moment does not set the peak
    res["matmul_peak_gflops_measured"], res["matmul_peak_gflops"] = peaks, max(peaks)
    res["machine"]["load_average_end"] = measure.load_average()
    res["data"] = res["conv"]["data"]
    res["flops"] = flop_fractions(res)
    res["targets"] = check_targets(res)
    return res


_STARTED = time.perf_counter()


def _progress(message: str) -> None:
    print(f"[speed {time.perf_counter() - _STARTED:5.0f} s] {message}", file=sys.stderr, flush=True)


def train_preset(preset: str, epochs: int, out: Path) -> dict:
    """`vae-train --preset PRESET` on the bundled digits as its own process, its speed as the run's
    metrics.json records it, and the training FLOPs per sample of the model it built."""
    from benchmarks.workloads import training_flops
    from vae_cli.run import load_run

    flags = ["--preset", preset, "--dataset", "mnist-5k", "--epochs", str(epochs)]
    child = measure.run_measured([sys.executable, "-m", "vae_cli.cli.train", *flags, "--name", preset,
                                  "--out", str(out)], env=measure.child_env())
    (run_path,) = out.iterdir()
    metrics = json.loads((run_path / "metrics.json").read_text(encoding="utf-8"))
    run = load_run(run_path)
    return {"command": " ".join(["vae-train", *flags]), "run_path": str(run_path), "config": run.config.to_dict(),
            "data": f"{run.data['n_train']:,} digits ({run.data['used']}), batch {run.config.batch_size}",
            "command_seconds": child.seconds,
            "backend": metrics["backend"]["name"], "speed_settings": metrics["speed"],
            "train_flops_per_sample": training_flops(run.vae),
            **{k: metrics[k] for k in ("train_samples_per_second", "epoch_samples_per_second",
                                       "train_seconds", "epoch_seconds")}}


def manifold_race(run_path: str, tmp: Path, per_point_calls: int) -> dict:
    """The tutorial's per-point `predict` loop (timed on `per_point_calls` points, extrapolated to
    all 900) plus its imshow figure, against latent.manifold + plots.plot_manifold, both on the
    same decoder in this process."""
    import keras
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
            "ours_seconds": statistics.median(ours), "speedup": loop_seconds / statistics.median(ours),
            "backend": keras.backend.backend()}


def cli_latency(repeats: int = 3) -> dict:
    """Wall time of two argument errors of `vae-train`, each a fresh interpreter (median of
    `repeats`): one argparse refuses, one the Config refuses."""
    cases = {"arg_error_argparse": ["--arch", "resnet"], "arg_error_config": ["--epochs", "0"]}
    return {name: statistics.median(
        measure.run_measured([sys.executable, "-m", "vae_cli.cli.train", *args], env=measure.child_env(),
                             check=False).seconds for _ in range(repeats)) for name, args in cases.items()}


def flop_fractions(res: dict) -> list[dict]:
    """Each preset's training-batch rate as GFLOP/s and as a fraction of the matmul peak."""
    rows = []
    for preset in PRESETS:
        r = res[preset]
        gflops = r["train_samples_per_second"] * r["train_flops_per_sample"] / 1e9
        rows.append({"workload": preset, "backend": r["backend"], "samples_per_second": r["train_samples_per_second"],
                     "epoch_samples_per_second": r["epoch_samples_per_second"],
                     "train_mflop_per_sample": r["train_flops_per_sample"] / 1e6,
                     "gflops": gflops, "fraction_of_peak": gflops / res["matmul_peak_gflops"]})
    return rows


def check_targets(res: dict) -> dict:
    measured = {"manifold_speedup": res["manifold"]["speedup"],
                "arg_error_seconds": max(res["startup"]["arg_error_argparse"], res["startup"]["arg_error_config"])}
    out = {}
    for key, value in measured.items():
        target, higher = TARGETS[key]
        out[key] = {"value": value, "target": target, "met": value >= target if higher else value <= target}
    return out


if __name__ == "__main__":
    sys.exit(main())
