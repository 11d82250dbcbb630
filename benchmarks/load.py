"""Load test of issue 6: `vae-sample -n 100000` and `vae-eval --iw-samples 5000` on the real MNIST
test set, each as its own process, with its wall time and peak memory.

    python benchmarks/load.py                               # trains an mlp-preset run first
    python benchmarks/load.py --run outputs/20261123-mlp    # or takes one
    python benchmarks/load.py --eval-first 2000 --small-k 500   # K=5000 on 2,000 digits, K=500 on all

Wall time and peak memory are measured by benchmarks/measure.py (the kernel's peak RSS of that
one process). The results go to --json (default benchmarks/load.json) and a table on stdout, with
the machine's load average before and after each command, because timings on a shared machine
mean little without it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as `python benchmarks/load.py`: import this checkout
    sys.path.insert(0, str(ROOT))

from benchmarks import measure  # noqa: E402

MNIST_T10K = ROOT.parent / "shared/data/mnist-t10k"


def run_command(name: str, argv: list[str]) -> dict:
    """Run `python -m <argv>` to completion; wall time, peak RSS, exit code and the load around it."""
    load_before = measure.load_average()
    r = measure.run_measured([sys.executable, "-m", *argv], env=measure.child_env(), check=False)
    result = {"name": name, "command": " ".join(["python", "-m", *argv]), "exit_code": r.exit_code,
              "wall_s": round(r.seconds, 1), "peak_rss_mib": round(r.peak_rss_bytes / 2**20, 1),
              "load_avg_1min": [(load_before or [0])[0], (measure.load_average() or [0])[0]],
              "output_tail": r.tail(600)}
    print(f"{name}: exit {r.exit_code}, {r.seconds:.0f} s, peak RSS {result['peak_rss_mib']:.0f} MiB", flush=True)
    if r.exit_code != 0:
        print(r.tail(), file=sys.stderr)
    return result


def first_digits(n: int, folder: Path) -> Path:
    """An IDX folder holding the first n digits of the MNIST test set (images and labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, header in (("images-idx3-ubyte", 16), ("labels-idx1-ubyte", 8)):
        data = gzip.decompress((MNIST_T10K / f"t10k-{kind}.gz").read_bytes())
        per_item = 28 * 28 if kind.startswith("images") else 1
        head = bytearray(data[:header])
        head[4:8] = n.to_bytes(4, "big")
        (folder / f"t10k-{kind}").write_bytes(bytes(head) + data[header:header + n * per_item])
    return folder


def train_run(work: Path, epochs: int) -> Path:
    out = work / "runs"
    r = run_command("vae-train --preset mlp", ["vae_cli.cli.train", "--preset", "mlp", "--dataset", "mnist-5k",
                                          "--epochs", str(epochs), "--name", "load", "--out", str(out)])
    if r["exit_code"] != 0:
        sys.exit("training the benchmark run failed")
    (run,) = out.iterdir()
    return run


def table(results: list[dict]) -> str:
    lines = [f"{'command':44} {'wall s':>8} {'peak RSS MiB':>13} {'load avg before-after':>22}"]
    for r in results:
        before, after = r["load_avg_1min"]
        lines.append(f"{r['name']:44} {r['wall_s']:8.0f} {r['peak_rss_mib']:13.0f} {f'{before:.2f}-{after:.2f}':>22}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an mlp-preset run to use (default: train one on mnist-5k)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs when training the run (default: 10)")
    parser.add_argument("-n", type=int, default=100_000, help="vae-sample -n (default: 100000)")
    parser.add_argument("-k", type=int, default=5000, help="vae-eval --iw-samples (default: 5000)")
    parser.add_argument("--eval-first", type=int, default=0,
                        help="run the K=-k evaluation on the first N test digits only (0: all 10,000)")
    parser.add_argument("--small-k", type=int, default=0,
                        help="also evaluate all 10,000 digits with this smaller K (0: skip)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks/load.json"))
    args = parser.parse_args()
    if not (MNIST_T10K / "t10k-images-idx3-ubyte.gz").is_file():
        sys.exit(f"the MNIST test set is not in {MNIST_T10K}")

    with tempfile.TemporaryDirectory(prefix="vae-load-") as tmp:
        work = Path(tmp)
        run = Path(args.run) if args.run else train_run(work, args.epochs)
        results = [run_command(f"vae-sample -n {args.n}",
                           ["vae_cli.cli.sample", str(run), "-n", str(args.n), "--out", str(work / "samples")])]
        written = sum(1 for _ in (work / "samples").glob("sample-*.png")) if (work / "samples").is_dir() else 0
        results[-1]["pngs_written"] = written
        full = f"idx:{MNIST_T10K}"
        data = full if not args.eval_first else f"idx:{first_digits(args.eval_first, work / 'first')}"
        evals = [(args.k, data, args.eval_first or 10_000)]
        if args.small_k:
            evals.append((args.small_k, full, 10_000))
        for k, spec, digits in evals:
            results.append(run_command(f"vae-eval --iw-samples {k} on {digits:,} digits",
                                   ["vae_cli.cli.eval", str(run), "--dataset", spec, "--iw-samples", str(k),
                                    "--json", str(work / f"eval-{k}.json")]))
            results[-1]["digits"] = digits
            if results[-1]["exit_code"] == 0:
                rep = json.loads((work / f"eval-{k}.json").read_text())
                results[-1].update(neg_elbo=round(rep["neg_elbo"], 2), iw_nll=round(rep["iw_nll"], 2))

    record = {"machine": measure.machine(), "load_avg_at_end": measure.load_average(), "results": results}
    Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    print(table(results))
    print(f"load average at the end: {record['load_avg_at_end']}; wrote {args.json}")
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
