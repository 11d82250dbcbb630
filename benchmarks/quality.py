"""The README's model-quality table: train presets on the 5,000 bundled MNIST digits, score them
on the real MNIST test set.

    python benchmarks/quality.py                       # every preset + the lever ablations
    python benchmarks/quality.py --presets quality --no-ablations --readme README.md

Each row is one real `vae-train` run (vae_cli.train.train into a run directory under --out),
reloaded from that directory exactly as `vae-eval` does (run.load_run), then scored with
vae_cli.evaluate.evaluate: the negative ELBO over all test digits (one z per digit, as in
training) and the importance-weighted bound on -log p(x) with K samples on the first
--iw-examples digits. Runs whose preset sets `binarize` are scored on a binarised copy of the
test set (one draw, seed 0), the literature's protocol. Numbers are nats per digit. The JSON
written next to the table holds every number, the protocol and the machine's load while it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from vae_cli.cli.common import Parser, quiet_tensorflow, run_main  # noqa: E402
from vae_cli.errors import UsageError  # noqa: E402

DEFAULT_TEST_DATA = REPO.parent / "shared" / "data" / "mnist-t10k"
PRESETS = ("mlp", "conv", "latent16", "quality")
# The classic PyTorch example (MLP 784-400-20, Adam 1e-3, batch 128) for 100 epochs, as a baseline.
CLASSIC = {"arch": "mlp", "hidden_dim": 400, "latent_dim": 20, "epochs": 100, "batch_size": 128,
           "learning_rate": 1e-3}
# The quality preset with one lever changed each: the table shows what every lever is worth.
ABLATIONS = {
    "quality, no shift augmentation": {"augment_shift": 0},
    "quality, no batch norm": {"batch_norm": False},
    "quality, mlp arch (no convolutions)": {"arch": "mlp"},
    "quality, constant learning rate": {"lr_schedule": "constant"},
    "quality, no KL warm-up": {"kl_warmup_epochs": 0},
    "quality, free bits 0.25 nats/unit": {"free_bits": 0.25},
    # K=5 decodes 5x as many images per step: a quarter of the epochs keeps the compute about equal
    "quality, IWAE K=5, 30 epochs": {"iw_train": 5, "epochs": 30, "kl_warmup_epochs": 3, "patience": 5},
    "quality, dynamically binarised": {"binarize": True},
    "quality, gaussian-learned likelihood": {"likelihood": "gaussian-learned"},
}
TABLE_START, TABLE_END = "<!-- quality-table:start -->", "<!-- quality-table:end -->"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="benchmarks/quality.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--test-data", default=str(DEFAULT_TEST_DATA),
                        help="folder with the MNIST t10k IDX files (default: %(default)s)")
    parser.add_argument("--presets", default=",".join(PRESETS),
                        help="comma-separated preset names or JSON paths (default: %(default)s)")
    parser.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=True,
                        help="also train the quality preset with each lever changed (default: on)")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also train the classic PyTorch-example MLP for 100 epochs (default: on)")
    parser.add_argument("--iw-samples", type=int, default=1000, help="K of the IW bound (default: 1000)")
    parser.add_argument("--iw-examples", type=int, default=1000,
                        help="test digits the IW bound is computed on (default: 1000)")
    parser.add_argument("--test-examples", type=int, default=0,
                        help="score only the first N test digits (default: 0 = all)")
    parser.add_argument("--out", default=str(REPO / "outputs" / "quality"),
                        help="folder for the run directories (default: %(default)s)")
    parser.add_argument("--json", default=None, help="write every number here (default: OUT/quality.json)")
    parser.add_argument("--readme", default=None,
                        help=f"replace the table between {TABLE_START} and {TABLE_END} in this file")
    return parser


def check_args(args) -> None:
    """Everything that can be wrong is reported before a minute of training is spent."""
    folder = Path(args.test_data).expanduser()
    if not any((folder / f"t10k-images-idx3-ubyte{gz}").is_file() for gz in ("", ".gz")):
        raise UsageError(
            f"--test-data: no t10k-images-idx3-ubyte(.gz) in {folder}; download the MNIST test set "
            "(t10k-images-idx3-ubyte.gz from the MNIST page or a mirror) into a folder and pass it")
    for name in ("iw_samples", "iw_examples"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')}: expected an integer >= 1, got {getattr(args, name)}")
    if args.test_examples < 0:
        raise UsageError(f"--test-examples: expected an integer >= 0, got {args.test_examples}")
    if args.readme and TABLE_START not in Path(args.readme).read_text(encoding="utf-8"):
        raise UsageError(f"--readme: {args.readme} has no {TABLE_START} ... {TABLE_END} block to replace")


def variants(args) -> list[tuple[str, str, dict]]:
    """(row label, preset, overrides) for every run; all train on the bundled digits."""
    from vae_cli.config import resolve

    rows = [(p, p, {}) for p in args.presets.split(",") if p]
    if args.baseline:
        rows.insert(0, ("classic MLP 784-400-20, 100 epochs", "mlp", CLASSIC))
    if args.ablations:
        rows += [(label, "quality", changes) for label, changes in ABLATIONS.items()]
    for label, preset, changes in rows:  # refuse a bad preset or override now, not after an hour
        resolve(preset, {**changes, "dataset": "mnist-5k"})
    return rows


def score(label: str, preset: str, changes: dict, x_test, args, log) -> dict:
    """Train one variant into a run directory, reload it as vae-eval does, score it on x_test."""
    from vae_cli.config import resolve
    from vae_cli.data import binarize, load_dataset
    from vae_cli.evaluate import evaluate
    from vae_cli.run import RunDir, load_run
    from vae_cli.train import train

    config = resolve(preset, {**changes, "dataset": "mnist-5k", "out": args.out,
                              "name": re.sub(r"[^A-Za-z0-9._-]", "_", Path(preset).stem)[:60] or "preset"})
    data = load_dataset(config.dataset, validation_split=config.validation_split, seed=config.seed)
    run = RunDir.create(config.out, config.run_name)
    load_before = os.getloadavg()
    result = train(config, data, run, log=lambda *a: None)
    load_after = os.getloadavg()
    loaded = load_run(run.path)
    x = binarize(x_test, seed=0) if config.binarize else x_test
    t0 = time.perf_counter()
    full = evaluate(loaded.encoder, loaded.decoder, x, likelihood=config.likelihood, seed=0)
    sub = evaluate(loaded.encoder, loaded.decoder, x[:args.iw_examples], likelihood=config.likelihood,
                   iw_samples=args.iw_samples, seed=0)
    eval_seconds = time.perf_counter() - t0
    val = np.add(result.history["val_recon"], result.history["val_kl"])  # what early stopping follows
    row = {
        "label": label, "preset": preset, "changes": changes, "run": str(run.path),
        "n_train": len(data.x_train), "n_val": len(data.x_val),
        "arch": config.arch, "latent_dim": config.latent_dim, "likelihood": config.likelihood,
        "binarized_test": config.binarize, "params": int(loaded.vae.count_params()),
        "epochs": result.metrics["epochs"], "best_epoch": int(np.argmin(val)) + 1,
        "val_neg_elbo_best": float(val.min()), "val_neg_elbo_last": float(val[-1]),
        "train_seconds": result.metrics["wall_seconds"],
        "train_cpu_seconds": result.metrics["cpu_seconds"],
        "load_average_1min": [round(load_before[0], 2), round(load_after[0], 2)],
        "test_examples": full["n_examples"], "neg_elbo": full["neg_elbo"], "recon": full["recon"],
        "kl": full["kl"], "active_units": full["active_units"],
        "iw_examples": sub["n_examples"], "iw_samples": sub["iw_samples"], "iw_nll": sub["iw_nll"],
        "neg_elbo_on_iw_examples": sub["neg_elbo"], "eval_seconds": round(eval_seconds, 1),
    }
    log(f"{label}: -ELBO {row['neg_elbo']:.2f}, IW-NLL {row['iw_nll']:.2f} "
        f"(-ELBO {row['neg_elbo_on_iw_examples']:.2f} on the same {row['iw_examples']} digits), "
        f"{row['epochs']} epochs in {row['train_seconds']:.0f} s ({row['train_cpu_seconds']:.0f} CPU s), "
        f"load {row['load_average_1min']}, scored in {eval_seconds:.0f} s")
    return row


def markdown_table(rows: list[dict]) -> str:
    head = ("| run | arch | latent dim | params | epochs | train wall time (CPU time) | test -ELBO | IW-NLL | "
            "-ELBO on the IW digits | active units |\n|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        note = " (binarised test set)" if r["binarized_test"] else ""
        note += " (density, not comparable)" if r["likelihood"].startswith("gaussian") else ""
        lines.append(
            f"| {r['label']}{note} | {r['arch']} | {r['latent_dim']} | {r['params']:,} | {r['epochs']} | "
            f"{r['train_seconds']:.0f} s ({r['train_cpu_seconds']:.0f} s) | {r['neg_elbo']:.2f} | {r['iw_nll']:.2f} | "
            f"{r['neg_elbo_on_iw_examples']:.2f} | {r['active_units']}/{r['latent_dim']} |")
    return head + "\n".join(lines) + "\n"


def pixel_entropy(x) -> float:
    """Mean over images of the summed binary entropy of the grey levels: the smallest Bernoulli
    reconstruction term any model can reach on x (nats per image)."""
    p = np.clip(np.asarray(x, np.float64).reshape(len(x), -1), 1e-12, 1 - 1e-12)
    return float(np.mean(np.sum(-(p * np.log(p) + (1 - p) * np.log1p(-p)), axis=1)))


def protocol(rows: list[dict], args, source: str, floor: float) -> str:
    k, n_iw = rows[0]["iw_samples"], rows[0]["iw_examples"]
    loads = [x for r in rows for x in r["load_average_1min"]]
    splits = sorted({f"{r['n_train']:,}/{r['n_val']:,}" for r in rows})
    return (f"Trained on mnist-5k, grey levels (train/validation digits: {', '.join(splits)}). Test: the first "
            f"{rows[0]['test_examples']:,} digits of {source}, pixels in [0, 1] (binarised once, seed 0, for "
            f"binarised runs); their summed pixel entropy, the floor of any Bernoulli reconstruction term, is "
            f"{floor:.2f} nats. -ELBO: one z per digit; IW-NLL: K={k} on the first {n_iw:,} of them. Train "
            f"wall and CPU (all threads) time are model.fit's; {platform.machine()} CPU with {os.cpu_count()} cores, 1-minute load "
            f"average {min(loads):.1f} to {max(loads):.1f} during training (other jobs shared the machine); "
            f"{time.strftime('%Y-%m-%d')}; `python benchmarks/quality.py`.\n")


def replace_readme_table(path: Path, text: str) -> None:
    readme = path.read_text(encoding="utf-8")
    start, end = readme.index(TABLE_START) + len(TABLE_START), readme.index(TABLE_END)
    path.write_text(readme[:start] + "\n" + text + readme[end:], encoding="utf-8")


def quality_command(args) -> int:
    check_args(args)
    quiet_tensorflow()
    from vae_cli.data import load_test_images

    todo = variants(args)
    folder = Path(args.test_data).expanduser()
    x_test, _, _ = load_test_images(f"idx:{folder}")
    source = f"the MNIST test set (t10k IDX files in {folder.name}/)"
    if args.test_examples:
        x_test = x_test[:args.test_examples]
    rows = [score(label, preset, changes, x_test, args, log=lambda m: print(m, flush=True))
            for label, preset, changes in todo]
    floor = pixel_entropy(x_test)
    text = markdown_table(rows) + "\n" + protocol(rows, args, source, floor)
    print("\n" + text)
    json_path = Path(args.json) if args.json else Path(args.out) / "quality.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"rows": rows, "protocol": protocol(rows, args, source, floor),
                                     "test_pixel_entropy": floor}, indent=2) + "\n")
    if args.readme:
        replace_readme_table(Path(args.readme), text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_main(parser.prog, lambda: quality_command(args))


if __name__ == "__main__":
    sys.exit(main())
