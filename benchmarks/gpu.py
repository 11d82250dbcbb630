"""The engine table for one machine: `vae-train` on both Keras engines (TensorFlow, JAX), in float32
and mixed precision, for the mlp and conv presets; one Markdown table, and the entries of
vae_cli/backend.py's MEASURED that `--backend auto` chooses from.

    python benchmarks/gpu.py                          # on a GPU machine: ~6 minutes, at most ~8
    python benchmarks/gpu.py --precisions float32     # a CPU (mixed is bfloat16 there, slower on CPUs without AMX)
    python benchmarks/gpu.py --archs mlp,conv,strided --rounds 3 --json gpu-results.json
    python benchmarks/gpu.py --archs mlp --precisions float32 --extra="--hidden-dim 400 --latent-dim 20"

Written for the first GPU machine vae-cli gets (none was available when it was written); it runs
anywhere, and says which device each run used (a JAX without CUDA support trains on the CPU even
on a GPU machine: install `jax[cuda12]`). Every run is the real command in its own fresh process
(benchmarks/measure.py), interleaved by round (every configuration once, then again), on the
bundled 4,500 training digits at batch 128. Speed is metrics.json's whole-epoch samples/s (the
median epoch after the first, so every per-epoch write counts and compilation does not); start-up
is command to the first epoch, wind-down the end of the last epoch to exit. Ratios are of medians
over rounds, against TensorFlow float32 of the same arch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as `python benchmarks/gpu.py`: import this checkout
    sys.path.insert(0, str(HERE.parent))

from benchmarks import measure  # noqa: E402

ENGINES = ("tensorflow", "jax")
EPOCHS = {"mlp": 12, "conv": 4, "strided": 4}  # at least 3, so the median skips the compiling first epoch
BUDGET_S = 7 * 60  # no run starts after it; with the one still running, the script ends within ~8 minutes


def one_run(arch: str, engine: str, precision: str, out: Path, extra: list[str]) -> dict:
    """vae-train in a fresh process; its speed, device and phases."""
    preset = "mlp" if arch == "mlp" else "conv"
    cmd = [sys.executable, "-m", "vae_cli.cli.train", "--preset", preset, "--arch", arch, "--backend", engine,
           "--precision", precision, "--dataset", "mnist-5k", "--epochs", str(EPOCHS[arch]), "--out", str(out),
           "--name", "bench", *extra]
    run = measure.run_measured(cmd, env=measure.child_env(), check=False)
    row = {"arch": arch, "engine": engine, "precision": precision, "exit_code": run.exit_code,
           "seconds": round(run.seconds, 2)}
    if run.exit_code != 0:
        return {**row, "error": run.tail(600)}
    (folder,) = out.iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    epoch_lines = [t for t, line in run.lines if "/step" in line and " - " in line]
    return {**row, "device": metrics["speed"]["device"], "devices": metrics["devices"],
            "dtype_policy": metrics["speed"]["precision"],
            "steps_per_execution": metrics["speed"]["steps_per_execution"],
            "epoch_samples_per_second": metrics["epoch_samples_per_second"],
            "train_samples_per_second": metrics["train_samples_per_second"],
            "first_epoch_seconds": round(metrics["epoch_seconds"][0], 2),
            "start_seconds": round(run.first_line_time("Epoch 1/") or float("nan"), 2),
            "wind_down_seconds": round(run.seconds - epoch_lines[-1], 2) if epoch_lines else None}


def median_of(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def table(results: list[dict]) -> tuple[str, dict]:
    """The Markdown table and the MEASURED entries (float32, per device and arch)."""
    keys = sorted({(r["arch"], r["precision"], r["engine"]) for r in results},
                  key=lambda k: (k[0], k[1] != "float32", ENGINES.index(k[2])))
    lines = ["| arch | precision | engine | device | epoch samples/s | train samples/s | x TF float32 | "
             "first epoch s | start s | wind-down s | runs |", "|" + "---|" * 11]
    measured: dict = {}
    for arch, precision, engine in keys:
        rows = [r for r in results if (r["arch"], r["precision"], r["engine"]) == (arch, precision, engine)]
        ok = [r for r in rows if r["exit_code"] == 0]
        if not ok:
            lines.append(f"| {arch} | {precision} | {engine} | - | failed | | | | | | {len(rows)} |")
            continue
        speed = median_of(ok, "epoch_samples_per_second")
        reference = median_of([r for r in results if r["exit_code"] == 0 and r["arch"] == arch
                               and r["precision"] == "float32" and r["engine"] == "tensorflow"],
                              "epoch_samples_per_second")
        device = "/".join(sorted({r["device"] for r in ok}))
        ratio = f"{speed / reference:.2f}" if reference else "-"
        lines.append(f"| {arch} | {precision} ({ok[0]['dtype_policy']}) | {engine} | {device} | {speed:,.0f} | "
                     f"{median_of(ok, 'train_samples_per_second'):,.0f} | {ratio} | "
                     f"{median_of(ok, 'first_epoch_seconds'):.1f} | {median_of(ok, 'start_seconds'):.1f} | "
                     f"{median_of(ok, 'wind_down_seconds'):.1f} | {len(ok)} |")
        if precision == "float32" and len({r["device"] for r in ok}) == 1:
            measured.setdefault((ok[0]["device"], arch), {})[engine] = round(speed, -1)
    return "\n".join(lines), measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="mlp,conv", help="comma-separated: mlp, conv, strided (default: mlp,conv)")
    parser.add_argument("--precisions", default="float32,mixed", help="comma-separated: float32, mixed")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default: 2)")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds; no new run starts after them")
    parser.add_argument("--extra", default="", help="more vae-train flags for every run, e.g. "
                        "--extra='--hidden-dim 400 --latent-dim 20'")
    parser.add_argument("--json", type=Path, help="write every run and the machine here")
    args = parser.parse_args(argv)
    archs = [a for a in args.archs.split(",") if a]
    precisions = [p for p in args.precisions.split(",") if p]
    if not set(archs) <= set(EPOCHS) or not set(precisions) <= {"float32", "mixed"} or args.rounds < 1:
        parser.error("--archs takes mlp, conv, strided; --precisions float32, mixed; --rounds >= 1")
    machine, load_before = measure.machine(), measure.load_average()
    start, results, skipped = time.monotonic(), [], 0
    for _ in range(args.rounds):
        for arch in archs:
            for precision in precisions:
                for engine in ENGINES:
                    if time.monotonic() - start > args.budget:
                        skipped += 1
                        continue
                    with tempfile.TemporaryDirectory() as out:
                        results.append(one_run(arch, engine, precision, Path(out), args.extra.split()))
                    r = results[-1]
                    print(f"# {arch} {precision} {engine}: {r.get('epoch_samples_per_second', 'failed')} samples/s "
                          f"on {r.get('device', '-')}", file=sys.stderr, flush=True)
    text, measured = table(results)
    print(f"vae-train {args.extra or '(presets)'} on {machine['cpu_description']}; "
          f"GPU: {'yes' if machine['gpu'] else 'no'}; "
          f"load average {load_before} before, {measure.load_average()} after; {machine['versions']}; "
          f"{machine['date']}")
    print(text)
    if skipped:
        print(f"\n{skipped} run(s) skipped: the {args.budget:.0f} s budget ran out")
    print("\nvae_cli/backend.py MEASURED entries (float32, whole-epoch samples/s):")
    for key, rates in sorted(measured.items()):
        print(f"    {key!r}: {rates!r},")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "load_before": load_before,
                                         "load_after": measure.load_average(), "runs": results}, indent=2) + "\n")
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
