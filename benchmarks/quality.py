"""The model-quality table of docs/model-quality.md: train presets on the 5,000 bundled MNIST
digits, score them on the real MNIST test set.

    python benchmarks/quality.py                                  # presets, baseline, every ablation
    python benchmarks/quality.py --ablations none --readme docs/model-quality.md
    python benchmarks/quality.py --reuse --ablations no-shift,iwae --readme docs/model-quality.md

Each row is one real `vae-train` run (vae_cli.train_run.train_new_run: a new run directory under
--out), then scored by `vae-eval RUN --dataset idx:TEST` (vae_cli.cli.eval.main, the user's command): the
negative ELBO over all test digits (one z per digit, as in training) and the importance-weighted
bound on -log p(x) with K samples on the first --iw-examples digits. Runs trained with
`binarize` are scored on a binarised copy of the test set, as vae-eval does for them. Numbers are
nats per digit. Every finished row is saved at once into the JSON file, with the protocol and
the machine's load while it ran; --reuse keeps those rows instead of training them again.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from benchmarks import measure  # noqa: E402
from vae_cli.cli.common import Parser, quiet_tensorflow, run_main
from vae_cli.errors import UsageError

DEFAULT_TEST_DATA = REPO.parent / "shared" / "data" / "mnist-t10k"
PRESETS = ("mlp", "conv", "latent16", "quality")
# The classic PyTorch example (MLP 784-400-20, Adam 1e-3, batch 128) for 100 epochs, as a baseline.
CLASSIC = {"arch": "mlp", "hidden_dim": 400, "latent_dim": 20, "epochs": 100, "batch_size": 128,
           "learning_rate": 1e-3}
# The quality preset with one lever changed each: key -> (row label, overrides, whether the change
# removes a lever the preset uses or adds one it does not). The table shows what each is worth.
ABLATIONS = {
    "no-shift": ("quality without shift augmentation", {"augment_shift": 0}, "removes"),
    "no-batch-norm": ("quality without batch norm", {"batch_norm": False}, "removes"),
    "mlp": ("quality with the mlp arch (no convolutions)", {"arch": "mlp"}, "removes"),
    "constant-lr": ("quality with a constant learning rate", {"lr_schedule": "constant"}, "removes"),
    "no-warmup": ("quality without KL warm-up", {"kl_warmup_epochs": 0}, "removes"),
    "free-bits": ("quality + free bits 0.25 nats/unit", {"free_bits": 0.25}, "adds"),
    # K=5 decodes 5x as many images per step: a fifth of the epochs keeps the compute about equal
    "iwae": ("quality + IWAE K=5, a fifth of the epochs", {"iw_train": 5, "kl_warmup_epochs": 2}, "adds"),
    "binarize": ("quality + dynamic binarisation", {"binarize": True}, "adds"),
    "gaussian-learned": ("quality + learned-variance Gaussian", {"likelihood": "gaussian-learned"}, "adds"),
}
TABLE_START, TABLE_END = "<!-- quality-table:start -->", "<!-- quality-table:end -->"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="benchmarks/quality.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--test-data", default=str(DEFAULT_TEST_DATA),
                        help="folder with the MNIST t10k IDX files (default: %(default)s)")
    parser.add_argument("--presets", default=",".join(PRESETS),
                        help="comma-separated preset names or JSON paths (default: %(default)s)")
    parser.add_argument("--ablations", default="all",
                        help=f"the quality preset with one lever changed: comma-separated keys of "
                        f"{', '.join(ABLATIONS)}; all; or none (default: %(default)s)")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also train the classic PyTorch-example MLP for 100 epochs (default: on)")
    parser.add_argument("--iw-samples", type=int, default=1000, help="K of the IW bound (default: 1000)")
    parser.add_argument("--ablation-epochs", type=int, default=0,
                        help="train the ablations (and one unchanged quality run as their reference) for this "
                        "many epochs instead of the preset's, to fit more of them in the time (default: 0)")
    parser.add_argument("--ablation-iw-samples", type=int, default=100,
                        help="K of the IW bound for ablation rows; 0 skips it (default: %(default)s)")
    parser.add_argument("--iw-examples", type=int, default=1000,
                        help="test digits the IW bound is computed on (default: 1000)")
    parser.add_argument("--test-examples", type=int, default=0,
                        help="score only the first N test digits (default: 0 = all)")
    parser.add_argument("--out", default=str(REPO / "outputs" / "quality"),
                        help="folder for the run directories (default: %(default)s)")
    parser.add_argument("--json", default=None, help="every number goes here (default: OUT/quality.json)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep rows already in the JSON file (same label and settings) instead of training "
                        "them again")
    parser.add_argument("--readme", default=None,
                        help=f"replace the table between {TABLE_START} and {TABLE_END} in this file")
    return parser


def ablation_keys(args) -> list[str]:
    if args.ablations == "all":
        return list(ABLATIONS)
    return [] if args.ablations == "none" else [k for k in args.ablations.split(",") if k]


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
    for name in ("ablation_iw_samples", "test_examples", "ablation_epochs"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')}: expected an integer >= 0, got {getattr(args, name)}")
    unknown = sorted(set(ablation_keys(args)) - set(ABLATIONS))
    if unknown:
        raise UsageError(f"--ablations: unknown {', '.join(unknown)}; expected keys of {', '.join(ABLATIONS)}, "
                         "all or none")
    if args.readme and TABLE_START not in Path(args.readme).read_text(encoding="utf-8"):
        raise UsageError(f"--readme: {args.readme} has no {TABLE_START} ... {TABLE_END} block to replace")


def variants(args) -> list[tuple[str, str, dict, str]]:
    """(row label, preset, overrides, kind) for every run; all train on the bundled digits.
    kind: "preset", or for an ablation whether it "removes" or "adds" a lever."""
    from vae_cli.config import resolve

    rows = [(p, p, {}, "preset") for p in args.presets.split(",") if p]
    if args.baseline:
        rows.insert(0, ("classic MLP 784-400-20, 100 epochs", "mlp", CLASSIC, "preset"))
    epochs = args.ablation_epochs or resolve("quality", {}).epochs
    short = {"epochs": epochs} if args.ablation_epochs else {}
    if short and ablation_keys(args):
        rows.append((f"quality, {epochs} epochs (the ablations' reference)", "quality", short, "reference"))
    for key in ablation_keys(args):
        label, changes, kind = ABLATIONS[key]
        changes = {**changes, **short, **({"epochs": max(1, epochs // 5)} if key == "iwae" else {})}
        rows.append((label, "quality", changes, kind))
    for _, preset, changes, _ in rows:  # refuse a bad preset or override now, not after an hour
        resolve(preset, {**changes, "dataset": "mnist-5k"})
    return rows


def vae_eval(run: Path, args, name: str, *flags: str) -> dict:
    """One `vae-eval RUN --dataset idx:TEST ...` call, exactly as a user runs it; its eval.json."""
    from vae_cli.cli.eval import main as eval_main

    report = run / f"{name}.json"
    with contextlib.redirect_stdout(io.StringIO()):
        if eval_main([str(run), "--dataset", f"idx:{Path(args.test_data).expanduser()}", "--seed", "0",
                      "--json", str(report), *flags]) != 0:
            raise UsageError(f"vae-eval failed on {run}")
    return json.loads(report.read_text())


def score(label: str, preset: str, changes: dict, kind: str, args, log) -> dict:
    """Train one variant into a run directory, then score it on the test set with vae-eval."""
    from vae_cli.config import resolve
    from vae_cli.run import load_run
    from vae_cli.train_run import train_new_run

    config = resolve(preset, {**changes, "dataset": "mnist-5k", "out": args.out,
                              "name": re.sub(r"[^A-Za-z0-9._-]", "_", Path(preset).stem)[:60] or "preset"})
    load_before = measure.load_average() or [0.0]
    result = train_new_run(config, log=lambda *a: None)
    load_after = measure.load_average() or [0.0]
    run, data = result.run_path, result.metrics["dataset"]
    t0 = time.perf_counter()
    limit = ("--examples", str(args.test_examples)) if args.test_examples else ()
    full = vae_eval(run, args, "eval-test", "--iw-samples", "0", *limit)
    k = args.iw_samples if kind == "preset" else args.ablation_iw_samples  # the reference is an ablation row
    sub = (vae_eval(run, args, f"eval-test-iw{k}", "--iw-samples", str(k), "--examples", str(args.iw_examples))
           if k else {"n_examples": 0, "neg_elbo": None})
    eval_seconds = time.perf_counter() - t0
    val = np.add(result.history["val_recon"], result.history["val_kl"])  # what early stopping follows
    row = {
        "label": label, "preset": preset, "changes": changes, "kind": kind, "run": str(run),
        "n_train": data["n_train"], "n_val": data["n_val"],
        "arch": config.arch, "latent_dim": config.latent_dim, "likelihood": config.likelihood,
        "binarized_test": full["protocol"]["binarized"], "params": int(load_run(run).vae.count_params()),
        "epochs": result.metrics["epochs"], "best_epoch": int(np.argmin(val)) + 1,
        "val_neg_elbo_best": float(val.min()), "val_neg_elbo_last": float(val[-1]),
        "train_seconds": result.metrics["wall_seconds"],
        "train_cpu_seconds": result.metrics["cpu_seconds"],
        "load_average_1min": [load_before[0], load_after[0]],
        "test_examples": full["n_examples"], "neg_elbo": full["neg_elbo"], "recon": full["recon"],
        "kl": full["kl"], "active_units": full["active_units"],
        "iw_examples": sub["n_examples"], "iw_samples": k, "iw_nll": sub.get("iw_nll"),
        "neg_elbo_on_iw_examples": sub["neg_elbo"], "eval_seconds": round(eval_seconds, 1),
        "protocol": full["protocol"],
    }
    iw = (f"IW-NLL {row['iw_nll']:.2f} (-ELBO {row['neg_elbo_on_iw_examples']:.2f} on the same "
          f"{row['iw_examples']} digits)" if k else "no IW bound")
    log(f"{label}: -ELBO {row['neg_elbo']:.2f}, {iw}, {row['epochs']} epochs in {row['train_seconds']:.0f} s "
        f"({row['train_cpu_seconds']:.0f} CPU s), load {row['load_average_1min']}, scored in {eval_seconds:.0f} s")
    return row


def _note(r: dict) -> str:
    note = " (binarised test set: not comparable with grey-level rows)" if r["binarized_test"] else ""
    return note + (" (a density on grey levels: not comparable)" if r["likelihood"].startswith("gaussian") else "")


def _time(r: dict) -> str:
    return f"{r['train_seconds']:.0f} s ({r['train_cpu_seconds']:.0f} s)"


def _iw_cell(r: dict) -> str:
    if r["iw_nll"] is None:
        return "not run"
    return f"{r['iw_nll']:.2f} (K={r['iw_samples']}, {r['iw_examples']:,} digits)"


def _verdict(r: dict, delta: float | None) -> str:
    """Whether the lever earned its place, read off the test -ELBO difference."""
    if _note(r):
        return "not comparable"
    if delta is None or r["kind"] == "reference":
        return ""
    if r["kind"] == "removes":
        return "the lever helps" if delta > 0 else "the lever did not help here"
    return "adding it helps" if delta < 0 else "adding it did not help"


def markdown_table(rows: list[dict]) -> str:
    """The presets' table, then (when there are any) the ablations' with their difference to quality."""
    presets = [r for r in rows if r["kind"] == "preset"]
    k, n_iw = (presets[0]["iw_samples"], presets[0]["iw_examples"]) if presets else (0, 0)
    text = (f"| preset | arch | latent dim | params | epochs | train wall time (CPU time) | test -ELBO | "
            f"IW-NLL (K={k}, first {n_iw:,} test digits) | -ELBO on those digits | active units |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    text += "".join(
        f"| {r['label']}{_note(r)} | {r['arch']} | {r['latent_dim']} | {r['params']:,} | {r['epochs']} | "
        f"{_time(r)} | {r['neg_elbo']:.2f} | {r['iw_nll']:.2f} | {r['neg_elbo_on_iw_examples']:.2f} | "
        f"{r['active_units']}/{r['latent_dim']} |\n" for r in presets)
    ablations = [r for r in rows if r["kind"] != "preset"]  # the reference first, delta 0
    if not ablations:
        return text
    base = next((r for r in rows if r["kind"] == "reference"), None) or next(
        (r for r in presets if r["preset"] == "quality"), None)
    versus = "vs the reference" if base and base["kind"] == "reference" else "vs quality"
    text += ("\n| ablation: one lever changed in quality | epochs | train wall time (CPU time) | test -ELBO | "
             f"{versus} | verdict | IW-NLL |\n|---|---|---|---|---|---|---|\n")
    for r in ablations:
        delta = r["neg_elbo"] - base["neg_elbo"] if base else None
        text += (f"| {r['label']}{_note(r)} | {r['epochs']} | {_time(r)} | {r['neg_elbo']:.2f} | "
                 f"{'' if delta is None else f'{delta:+.2f}'} | {_verdict(r, delta)} | {_iw_cell(r)} |\n")
    return text


def pixel_entropy(x) -> float:
    """Mean over images of the summed binary entropy of the grey levels: the smallest Bernoulli
    reconstruction term any model can reach on x (nats per image)."""
    p = np.clip(np.asarray(x, np.float64).reshape(len(x), -1), 1e-12, 1 - 1e-12)
    return float(np.mean(np.sum(-(p * np.log(p) + (1 - p) * np.log1p(-p)), axis=1)))


def protocol(rows: list[dict], source: str, floor: float) -> str:
    presets = [r for r in rows if r["kind"] == "preset"] or rows
    k, n_iw = presets[0]["iw_samples"], presets[0]["iw_examples"]
    loads = [x for r in rows for x in r["load_average_1min"]]
    splits = sorted({f"{r['n_train']:,}/{r['n_val']:,}" for r in rows})
    return (f"Trained on mnist-5k, grey levels (train/validation digits: {', '.join(splits)}). Test: the first "
            f"{rows[0]['test_examples']:,} digits of {source}, pixels in [0, 1] (binarised once, seed 0, for "
            f"binarised runs); their summed pixel entropy, the floor of any Bernoulli reconstruction term, is "
            f"{floor:.2f} nats. -ELBO: one z per digit; IW-NLL: K={k} on the first {n_iw:,} of them (ablation "
            f"rows: as stated in the row). Train wall and CPU (all threads) time are model.fit's; "
            f"{measure.cpu_description()}, 1-minute load average {min(loads):.1f} to "
            f"{max(loads):.1f} during training (other jobs shared the machine); {time.strftime('%Y-%m-%d')}; "
            f"`python benchmarks/quality.py`.\n")


def replace_readme_table(path: Path, text: str) -> None:
    readme = path.read_text(encoding="utf-8")
    start, end = readme.index(TABLE_START) + len(TABLE_START), readme.index(TABLE_END)
    path.write_text(readme[:start] + "\n" + text + readme[end:], encoding="utf-8")


def _saved_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    try:
        return json.loads(path.read_text())["rows"]
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--reuse: {path} is not a quality.json this script wrote ({e})") from None


def quality_command(args) -> int:
    check_args(args)
    quiet_tensorflow()
    from vae_cli.data import load_eval_split

    todo = variants(args)
    folder = Path(args.test_data).expanduser()
    x_test = load_eval_split(f"idx:{folder}", validation_split=0.1, seed=0, all_if_no_test=True).x
    source = f"the MNIST test set (t10k IDX files in {folder.name}/)"
    if args.test_examples:
        x_test = x_test[:args.test_examples]
    floor = pixel_entropy(x_test)
    json_path = Path(args.json) if args.json else Path(args.out) / "quality.json"
    saved = {(r["label"], r["preset"], json.dumps(r["changes"], sort_keys=True)): r
             for r in (_saved_rows(json_path) if args.reuse else [])}
    rows = []
    for label, preset, changes, kind in todo:
        key = (label, preset, json.dumps(changes, sort_keys=True))
        rows.append(saved.get(key) or score(label, preset, changes, kind, args, log=lambda m: print(m, flush=True)))
        json_path.parent.mkdir(parents=True, exist_ok=True)  # every finished row is kept at once
        json_path.write_text(json.dumps({"rows": rows, "protocol": protocol(rows, source, floor),
                                         "test_pixel_entropy": floor}, indent=2) + "\n")
    text = markdown_table(rows) + "\n" + protocol(rows, source, floor)
    print("\n" + text)
    if args.readme:
        replace_readme_table(Path(args.readme), text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_main(parser.prog, lambda: quality_command(args))


if __name__ == "__main__":
    sys.exit(main())
