"""docs/sample-quality.md's numbers: vae-eval --samples N on trained runs against the real MNIST
test digits, beside the floor that real digits reach against other real digits.

    python benchmarks/sample_quality.py --t10k DIR RUN [RUN ...]
    python benchmarks/sample_quality.py --t10k DIR --samples 1000 --seeds 0,1,2 --temperatures 1,0.7 RUN

Each row is `vae-eval RUN --dataset idx:DIR --iw-samples 0 --samples N --seed S --temperature T`
(vae_cli.cli.eval.main, the user's command) and its eval.json "sample_quality". The floor row
puts N test digits against N other test digits (two disjoint seeded draws) through the same
digit-classifier features: what a perfect generator would score at this N, since the Fréchet
distance of finite samples is biased upwards. Results go to --json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from vae_cli.cli.common import Parser, finite_float, int_list, quiet_tensorflow, run_main  # noqa: E402
from vae_cli.errors import UsageError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sample_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories with 28x28 digits")
    parser.add_argument("--t10k", required=True, metavar="DIR", help="folder with the MNIST t10k IDX files")
    parser.add_argument("--samples", type=int, default=1000, metavar="N")
    parser.add_argument("--seeds", type=int_list, default=(0,), help="comma-separated seeds (default: 0)")
    parser.add_argument("--temperatures", default="1", help="comma-separated temperatures (default: 1)")
    parser.add_argument("--samplers", default="prior",
                        help="comma-separated vae-eval --sampler values, e.g. prior,gmm (default: prior)")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "sample-quality-results.json"))
    return parser


def floor(t10k: str, n: int, seed: int) -> dict:
    """Real against real: two disjoint draws of n test digits in the digit classifier's features."""
    from vae_cli.data import load_eval_split
    from vae_cli.feature_net import features_and_classes, load_digit_classifier
    from vae_cli.sample_quality import compare

    test = load_eval_split(f"idx:{t10k}", validation_split=0.1, seed=0, all_if_no_test=True)
    order = np.random.default_rng([seed, 4]).permutation(len(test.x))
    model, _ = load_digit_classifier()
    a, _ = features_and_classes(model, test.x[order[:n]])
    b, _ = features_and_classes(model, test.x[order[n:2 * n]])
    return {"row": "real vs real", "seed": seed, **compare(a, b, seed=seed)}


def summarise(rows: list[dict]) -> list[dict]:
    """Per run and temperature: each number's mean over the seeds, its spread (std) over the seeds,
    and the mean of the standard errors vae-eval reported, which should be close to that spread."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["row"], r.get("temperature")), []).append(r)
    out = []
    for (row, temperature), members in groups.items():
        entry = {"row": row, "temperature": temperature, "seeds": len(members)}
        for name in ("frechet_distance", "precision", "recall", "label_accuracy"):
            if name not in members[0]:
                continue
            values = np.array([m[name] for m in members])
            entry[name] = {"mean": float(values.mean()),
                           "std_over_seeds": float(values.std(ddof=1)) if len(values) > 1 else None,
                           "mean_reported_se": float(np.mean([m[f"{name}_se"] for m in members]))}
        out.append(entry)
    return out


def measure(args) -> int:
    quiet_tensorflow()
    from vae_cli.cli.eval import main as vae_eval

    temperatures = [finite_float(t) for t in args.temperatures.split(",")]
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    from vae_cli.samplers import parse_sampler

    for sampler in samplers:  # a bad value fails here, before the first evaluation
        try:
            parse_sampler(sampler)
        except ValueError as e:
            raise UsageError(f"--samplers: {e}") from None
    rows = [floor(args.t10k, args.samples, seed) for seed in args.seeds]
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            for sampler, temperature, seed in itertools.product(samplers, temperatures, args.seeds):
                report = Path(tmp) / "eval.json"
                code = vae_eval([run, "--dataset", f"idx:{args.t10k}", "--iw-samples", "0", "--samples",
                                 str(args.samples), "--seed", str(seed), "--temperature", str(temperature),
                                 "--sampler", sampler, "--json", str(report)])
                if code:
                    return code
                sq = json.loads(report.read_text())["sample_quality"]
                config = json.loads((Path(run) / "config.json").read_text())["config"]
                name = Path(run).name + ("" if sampler == "prior" else f" ({sampler})")
                rows.append({"row": name, "config": config, "seed": seed, "temperature": temperature,
                             "sampler": sampler, **{k: v for k, v in sq.items() if k != "protocol"},
                             "protocol": sq["protocol"]})
    result = {"summary": summarise(rows), "command": "python benchmarks/sample_quality.py --t10k DIR " + " ".join(
                  f"--{k} {v}" for k, v in (("samples", args.samples), ("seeds", ",".join(map(str, args.seeds))),
                                            ("temperatures", args.temperatures),
                                            ("samplers", args.samplers))) + " RUN...",
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, load {os.getloadavg()[0]:.1f} at the end",
              "rows": rows}
    from vae_cli.atomic import write_json

    write_json(args.json, result)
    for e in result["summary"]:
        print(f"{e['row'][:24]:24} T={e['temperature'] or '-'} ({e['seeds']} seeds): " + ", ".join(
            f"{name} {e[name]['mean']:.3f} (spread {e[name]['std_over_seeds'] or 0:.3f}, "
            f"reported se {e[name]['mean_reported_se']:.3f})" for name in ("frechet_distance", "precision", "recall",
                                                                    "label_accuracy") if name in e))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_main(parser.prog, lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
