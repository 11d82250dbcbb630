"""The model-quality table of docs/model-quality.md: train presets on the 5,000 bundled MNIST
digits, score them on the real MNIST test set.

    python benchmarks/quality.py                                  # presets, baseline, every ablation
    python benchmarks/quality.py --ablations none --readme docs/model-quality.md
    python benchmarks/quality.py --reuse --ablations no-shift,iwae --readme docs/model-quality.md
    python benchmarks/quality.py --reuse --presets quality --no-baseline --ablations none  # quality + priors

Each row is one real `vae-train` run (vae_cli.train_run.train_new_run: a new run directory under
--out), then scored by `vae-eval RUN --dataset idx:TEST` (vae_cli.cli.eval.main, the user's command): the
negative ELBO over all test digits (one z per digit, as in training), the importance-weighted
bound on -log p(x) with K samples on the first --iw-examples digits, and sample quality
(`--samples N --sampler prior`, then `--sampler gmm`: Fréchet distance, precision and recall of N
samples against N test digits in the shipped digit classifier's features). Runs trained with
`binarize` are scored on a binarised copy of the test set, as vae-eval does for them. Numbers are
nats per digit. Besides the presets and the ablations, --priors adds the quality preset with a
learned prior (PRIORS). Every finished row is saved at once into the JSON file, with the
protocol, the machine's load while it ran and what it was made with ("requested": the resolved
settings, test data and evaluation sizes). --reuse keeps the file's rows: a row this call would
make is kept when its label and "requested" are unchanged and made again otherwise (e.g. after
configs/quality.json changed); when only the samplers changed (what vae-cli fits gmm to) and the
run directory is still there, only its sample columns are scored again; rows this call does not
make stay as they are, except ablation and prior rows whose label no key of ABLATIONS or PRIORS
makes any more (a lever renamed or removed): those are dropped, each with a line saying so.
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

from benchmarks import measure
from vae_cli.cli.common import Parser, quiet_tensorflow, run_main
from vae_cli.errors import UsageError
from vae_cli.sample_quality import MAX_SAMPLES, MIN_SAMPLES

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
    "no-weight-decay": ("quality without weight decay", {"weight_decay": 0.0}, "removes"),
    "relu": ("quality with relu instead of silu", {"activation": "relu"}, "removes"),
    # the preset has none: warm-up from a KL weight of 0 let the KL blow up in epoch 1 for some seeds
    "warmup": ("quality + KL warm-up over 10 epochs", {"kl_warmup_epochs": 10}, "adds"),
    # free bits and IWAE training need the standard prior's closed-form KL / log p(z): they replace mog:100
    "free-bits": ("quality + free bits 0.25 nats/unit (standard prior)", {"free_bits": 0.25, "prior": "standard"},
                  "adds"),
    # K=5 decodes 5x as many images per step: a fifth of the epochs keeps the compute about equal
    "iwae": ("quality + IWAE K=5, a fifth of the epochs (standard prior)",
             {"iw_train": 5, "kl_warmup_epochs": 2, "prior": "standard"}, "adds"),
    "binarize": ("quality + dynamic binarisation", {"binarize": True}, "adds"),
    "gaussian-learned": ("quality + learned-variance Gaussian", {"likelihood": "gaussian-learned"}, "adds"),
}
# The quality preset with another prior, at full length. The VampPrior refuses batch norm (it
# encodes its pseudo-inputs as a batch of their own), so it comes with the preset's own prior
# without batch norm, its reference.
PRIORS = {  # the quality preset's own prior is a learned 100-component mixture (mog:100)
    "standard": ("quality with the standard prior N(0, I)", {"prior": "standard"}),
    "mog": ("quality with a 10-component mixture prior (mog:10)", {"prior": "mog:10"}),
    "vamp": ("quality with a VampPrior (vamp:50), without batch norm", {"prior": "vamp:50", "batch_norm": False}),
    "no-batch-norm": ("quality without batch norm (the VampPrior's reference)", {"batch_norm": False}),
}
SAMPLERS = ("prior", "gmm")  # vae-eval --sampler: the run's prior, and a 10-component GMM on its codes
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
    parser.add_argument("--priors", default="all",
                        help=f"the quality preset with a learned prior, full length: comma-separated keys of "
                        f"{', '.join(PRIORS)}; all; or none (default: %(default)s)")
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
    parser.add_argument("--samples", type=int, default=1000,
                        help="sample quality of every row with N samples against N test digits, once per "
                        f"sampler ({', '.join(SAMPLERS)}); 0 skips it (default: %(default)s)")
    parser.add_argument("--test-examples", type=int, default=0,
                        help="score only the first N test digits (default: 0 = all)")
    parser.add_argument("--out", default=str(REPO / "outputs" / "quality"),
                        help="folder for the run directories (default: %(default)s)")
    parser.add_argument("--json", default=None, help="every number goes here (default: OUT/quality.json)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the JSON file's rows: one this call would make is kept when its label, "
                        "resolved settings and evaluation sizes are unchanged, else made again; the others stay")
    parser.add_argument("--readme", default=None,
                        help=f"replace the table between {TABLE_START} and {TABLE_END} in this file")
    return parser


def _keys(text: str, table: dict) -> list[str]:
    if text == "all":
        return list(table)
    return [] if text == "none" else [k for k in text.split(",") if k]


def ablation_keys(args) -> list[str]:
    return _keys(args.ablations, ABLATIONS)


def prior_keys(args) -> list[str]:
    return _keys(args.priors, PRIORS)


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
    if args.samples and not MIN_SAMPLES <= args.samples <= MAX_SAMPLES:
        raise UsageError(f"--samples: expected 0 (no sample quality) or an integer from {MIN_SAMPLES} to "
                         f"{MAX_SAMPLES:,}, got {args.samples}")
    for flag, keys, table in (("--ablations", ablation_keys(args), ABLATIONS), ("--priors", prior_keys(args), PRIORS)):
        unknown = sorted(set(keys) - set(table))
        if unknown:
            raise UsageError(f"{flag}: unknown {', '.join(unknown)}; expected keys of {', '.join(table)}, all or none")
    if not (args.presets.strip(",") or args.baseline or ablation_keys(args) or prior_keys(args) or args.reuse):
        raise UsageError("nothing to train: --presets is empty and --no-baseline, --ablations none, --priors none; "
                         "name a preset, or add --reuse to show the saved rows")
    if args.readme and TABLE_START not in Path(args.readme).read_text(encoding="utf-8"):
        raise UsageError(f"--readme: {args.readme} has no {TABLE_START} ... {TABLE_END} block to replace")


def variants(args) -> list[tuple[str, str, dict, str]]:
    """(row label, preset, overrides, kind) for every run; all train on the bundled digits.
    kind: "preset"; "prior" for the quality preset with a learned prior; for an ablation whether
    it "removes" or "adds" a lever, or "reference" for the unchanged run the ablations are judged by."""
    from vae_cli.config import resolve

    rows = [(p, p, {}, "preset") for p in args.presets.split(",") if p]
    if args.baseline:
        rows.insert(0, ("classic MLP 784-400-20, 100 epochs", "mlp", CLASSIC, "preset"))
    rows += [(PRIORS[key][0], "quality", PRIORS[key][1], "prior") for key in prior_keys(args)]
    epochs = args.ablation_epochs or resolve("quality", {}).epochs
    short = {"epochs": epochs} if args.ablation_epochs else {}
    if short and ablation_keys(args):
        rows.append((f"quality, {epochs} epochs (the ablations' reference)", "quality", short, "reference"))
    for key in ablation_keys(args):
        label, changes, kind = ABLATIONS[key]
        changes = {**changes, **short, **({"epochs": max(1, epochs // 5)} if key == "iwae" else {})}
        rows.append((label, "quality", changes, kind))
    for _, preset, changes, _ in rows:  # refuse a bad preset or override now, not after an hour
        run_config(preset, changes, args)
    return rows


def run_config(preset: str, changes: dict, args):
    """The frozen Config a row trains: the preset, its changes, the bundled digits, a run under --out."""
    from vae_cli.config import resolve

    return resolve(preset, {**changes, "dataset": "mnist-5k", "out": args.out,
                            "name": re.sub(r"[^A-Za-z0-9._-]", "_", Path(preset).stem)[:60] or "preset"})


def iw_samples_of(kind: str, args) -> int:
    return args.iw_samples if kind in ("preset", "prior") else args.ablation_iw_samples  # reference: an ablation


def requested(preset: str, changes: dict, kind: str, args) -> dict:
    """What a row is made with: when this is unchanged, --reuse keeps the saved row."""
    settings = run_config(preset, changes, args).to_dict()
    for where in ("out", "name"):  # where the run directory goes changes no number
        settings.pop(where)
    k = iw_samples_of(kind, args)
    return {"settings": settings, "test_data": str(Path(args.test_data).expanduser().resolve()),
            "test_examples": args.test_examples, "iw_samples": k, "iw_examples": args.iw_examples if k else 0,
            "samples": args.samples, "samplers": sampler_protocol() if args.samples else []}


def sampler_protocol() -> list[str]:
    """The samplers as the library draws them now: a change (e.g. what gmm is fitted to) re-scores
    the sample columns of saved rows (`rescore_samples`)."""
    from vae_cli.samplers import CODES

    return [s if s == "prior" else f"{s} fitted to {CODES}" for s in SAMPLERS]


def sample_quality(run: Path, args) -> dict:
    """One `vae-eval --samples N --sampler S` report per sampler (each its own --json file); the ELBO
    pass each call makes is kept short."""
    return {s: vae_eval(run, args, f"eval-test-samples{args.samples}-{s}", "--iw-samples", "0", "--examples",
                        str(args.iw_examples), "--samples", str(args.samples), "--sampler", s)["sample_quality"]
            for s in (SAMPLERS if args.samples else ())}


def rescore_samples(row: dict, want: dict, args, log) -> dict | None:
    """A saved row made with everything `want` asks but the samplers, scored again for sample
    quality from its run directory, without training; None when that directory is gone."""
    run = Path(row["run"])
    same_training = {k: v for k, v in row.get("requested", {}).items() if k != "samplers"} == \
        {k: v for k, v in want.items() if k != "samplers"}
    if not (same_training and (run / "config.json").is_file()):
        return None
    load = measure.load_average() or [0.0]
    samples = sample_quality(run, args)
    log(f"{row['label']}: sample quality scored again ({', '.join(want['samplers'])}): "
        + "; ".join(f"{s}: {_sample_text(q)}" for s, q in samples.items()))
    return {**row, "sample_quality": samples, "requested": want, "samples_date": time.strftime("%Y-%m-%d"),
            "samples_load_average_1min": [load[0], (measure.load_average() or [0.0])[0]]}


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
    from vae_cli.run import load_run
    from vae_cli.train_run import train_new_run

    config = run_config(preset, changes, args)
    load_before = measure.load_average() or [0.0]
    result = train_new_run(config, log=lambda *a: None)
    load_after = measure.load_average() or [0.0]
    run, data = result.run_path, result.metrics["dataset"]
    t0 = time.perf_counter()
    limit = ("--examples", str(args.test_examples)) if args.test_examples else ()
    full = vae_eval(run, args, "eval-test", "--iw-samples", "0", *limit)
    k = iw_samples_of(kind, args)
    sub = (vae_eval(run, args, f"eval-test-iw{k}", "--iw-samples", str(k), "--examples", str(args.iw_examples))
           if k else {"n_examples": 0, "neg_elbo": None})
    samples = sample_quality(run, args)
    eval_seconds = time.perf_counter() - t0
    load_end = measure.load_average() or [0.0]
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
        "eval_load_average_1min": [load_after[0], load_end[0]],
        "engine": load_run(run).config.backend, "date": time.strftime("%Y-%m-%d"),
        "test_examples": full["n_examples"], "neg_elbo": full["neg_elbo"], "recon": full["recon"],
        "kl": full["kl"], "active_units": full["active_units"],
        "iw_examples": sub["n_examples"], "iw_samples": k, "iw_nll": sub.get("iw_nll"),
        "neg_elbo_on_iw_examples": sub["neg_elbo"], "eval_seconds": round(eval_seconds, 1),
        "protocol": full["protocol"], "sample_quality": samples,
        "requested": requested(preset, changes, kind, args),
    }
    iw = (f"IW-NLL {row['iw_nll']:.2f} (-ELBO {row['neg_elbo_on_iw_examples']:.2f} on the same "
          f"{row['iw_examples']} digits)" if k else "no IW bound")
    iw += "".join(f"; {s}: {_sample_text(q)}" for s, q in samples.items())
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


def _sample_text(q: dict) -> str:
    return (f"FD {q['frechet_distance']:.1f} ± {q['frechet_distance_se']:.1f}, precision {q['precision']:.3f}, "
            f"recall {q['recall']:.3f}")


NOT_RUN = "not run†"
SAMPLE_COLUMNS = (("frechet_distance", "FD", 1), ("precision", "precision", 2), ("recall", "recall", 2))


def _sample_cells(r: dict) -> str:
    """FD, precision and recall, each 'prior ± se -> gmm ± se'; 'not run' for rows made without them."""
    samples = r.get("sample_quality") or {}
    if not all(s in samples for s in SAMPLERS):
        return f" {NOT_RUN} |" * len(SAMPLE_COLUMNS)
    return "".join(" " + " → ".join(f"{samples[s][name]:.{digits}f} ± {samples[s][name + '_se']:.{digits}f}"
                                    for s in SAMPLERS) + " |" for name, _, digits in SAMPLE_COLUMNS)


SAMPLE_HEADER = "".join(f" {title}, prior → gmm |" for _, title, _ in SAMPLE_COLUMNS)


# The 40-epoch ablation reference's test -ELBO over training seeds 0, 1, 2: 100.23, 100.49, 100.30
# (`vae-train --preset quality --epochs 40 --seed S`, then `vae-eval RUN --dataset idx:T10K`,
# 2026-11-29). A difference no larger than this spread says nothing about the lever.
SEED_SPREAD_NATS = 0.26


def _verdict(r: dict, delta: float | None) -> str:
    """Whether the lever earned its place, read off the test -ELBO difference."""
    if _note(r):
        return "not comparable"
    if delta is None or r["kind"] == "reference":
        return ""
    if abs(delta) <= SEED_SPREAD_NATS:
        return f"within the seed spread ({SEED_SPREAD_NATS:.2f})"
    if r["kind"] == "removes":
        return "the lever helps" if delta > 0 else "the lever did not help here"
    return "adding it helps" if delta < 0 else "adding it did not help"


def markdown_table(rows: list[dict]) -> str:
    """The presets' table (the learned-prior rows after them), then (when there are any) the
    ablations' with their difference to quality; both with the sample-quality columns."""
    presets = [r for r in rows if r["kind"] == "preset"] + [r for r in rows if r["kind"] == "prior"]
    k, n_iw = (presets[0]["iw_samples"], presets[0]["iw_examples"]) if presets else (0, 0)
    text = (f"| preset | arch | latent dim | params | epochs | train wall time (CPU time) | test -ELBO | "
            f"IW-NLL (K={k}, first {n_iw:,} test digits) | -ELBO on those digits | active units |{SAMPLE_HEADER}\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    text += "".join(
        f"| {r['label']}{_note(r)} | {r['arch']} | {r['latent_dim']} | {r['params']:,} | {r['epochs']} | "
        f"{_time(r)} | {r['neg_elbo']:.2f} | {r['iw_nll']:.2f} | {r['neg_elbo_on_iw_examples']:.2f} | "
        f"{r['active_units']}/{r['latent_dim']} |{_sample_cells(r)}\n" for r in presets)
    ablations = [r for r in rows if r["kind"] not in ("preset", "prior")]  # the reference first, delta 0
    if not ablations:
        return text
    base = next((r for r in rows if r["kind"] == "reference"), None) or next(
        (r for r in presets if r["preset"] == "quality"), None)
    versus = "vs the reference" if base and base["kind"] == "reference" else "vs quality"
    text += ("\n| ablation: one lever changed in quality | epochs | train wall time (CPU time) | test -ELBO | "
             f"{versus} | verdict | IW-NLL |{SAMPLE_HEADER}\n|---|---|---|---|---|---|---|---|---|---|\n")
    for r in ablations:
        delta = r["neg_elbo"] - base["neg_elbo"] if base else None
        text += (f"| {r['label']}{_note(r)} | {r['epochs']} | {_time(r)} | {r['neg_elbo']:.2f} | "
                 f"{'' if delta is None else f'{delta:+.2f}'} | {_verdict(r, delta)} | {_iw_cell(r)} |"
                 f"{_sample_cells(r)}\n")
    return text


def pixel_entropy(x) -> float:
    """Mean over images of the summed binary entropy of the grey levels: the smallest Bernoulli
    reconstruction term any model can reach on x (nats per image)."""
    p = np.clip(np.asarray(x, np.float64).reshape(len(x), -1), 1e-12, 1 - 1e-12)
    return float(np.mean(np.sum(-(p * np.log(p) + (1 - p) * np.log1p(-p)), axis=1)))


def _date(r: dict) -> str:
    """The day a row was trained: recorded, or (rows from before) read off its run directory's name."""
    if "date" in r:
        return r["date"]
    stamp = re.search(r"(\d{4})(\d\d)(\d\d)-\d{6}", r["run"])
    return "-".join(stamp.groups()) if stamp else "unknown"


def sample_protocol(rows: list[dict]) -> str:
    """The sample columns' protocol, from the first row that has them (all share --samples), and
    why some rows have none."""
    done = [r for r in rows if all(s in (r.get("sample_quality") or {}) for s in SAMPLERS)]
    text = ""
    if done:
        prior, gmm = (done[0]["sample_quality"][s]["protocol"] for s in SAMPLERS)
        net = prior["feature_network"]
        accuracy = f", {net['t10k_accuracy']:.2%} accurate on t10k" if net.get("t10k_accuracy") else ""
        text = (f"Sample columns: `vae-eval RUN --dataset idx:DIR --samples {prior['n']} --sampler prior` and "
                f"`--sampler gmm`, seed {prior['seed']}: {prior['n']:,} {prior['samples']}, their z drawn from "
                f"the run's prior (N(0, I), or the learned mixture of a prior row) or from a {gmm['sampler']}; "
                f"against {prior['reference']['selection']} from the test digits ({prior['reference']['split']}); "
                f"in the features of {net['name']} ({net['features']}, {net['weights']}, sha256 "
                f"{net['weights_sha256'][:12]}…{accuracy}). FD: squared Fréchet distance in those features (not "
                f"an Inception FID); precision and recall: {prior['precision_recall']}; ± one standard error "
                "(half-sampling). ")
    if len(done) < len(rows):
        text += (f"{NOT_RUN}: the row was measured before the sample columns existed (or with `--samples 0`) and "
                 "not trained again. ")
    return text


def protocol(rows: list[dict], source: str, floor: float) -> str:
    presets = [r for r in rows if r["kind"] in ("preset", "prior")] or rows
    k, n_iw = presets[0]["iw_samples"], presets[0]["iw_examples"]
    loads = [x for r in rows for x in r["load_average_1min"]]
    eval_loads = [x for r in rows for x in r.get("eval_load_average_1min", ())]
    during_eval = f" and {min(eval_loads):.1f} to {max(eval_loads):.1f} while scoring" if eval_loads else ""
    splits = sorted({f"{r['n_train']:,}/{r['n_val']:,}" for r in rows})
    engines = sorted({r.get("engine", "tensorflow") for r in rows})  # rows from before engines: TensorFlow
    dates = sorted({_date(r) for r in rows})
    return (f"Trained on mnist-5k, grey levels (train/validation digits: {', '.join(splits)}). Test: the first "
            f"{rows[0]['test_examples']:,} digits of {source}, pixels in [0, 1] (binarised once, seed 0, for "
            f"binarised runs); their summed pixel entropy, the floor of any Bernoulli reconstruction term, is "
            f"{floor:.2f} nats. -ELBO: one z per digit; IW-NLL: K={k} on the first {n_iw:,} of them (ablation "
            f"rows: as stated in the row). {sample_protocol(rows)}Train wall and CPU (all threads) time are "
            f"model.fit's, on {' and '.join(engines)} (one process for all rows; `vae-train`'s --backend auto "
            f"picks JAX for the mlp arch on a CPU); {measure.cpu_description()}, 1-minute load average "
            f"{min(loads):.1f} to {max(loads):.1f} during training{during_eval} (other jobs shared the machine); "
            f"trained {' to '.join(dict.fromkeys([dates[0], dates[-1]]))}; `python benchmarks/quality.py`.\n")


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


def _obsolete(row: dict) -> bool:
    """An ablation or prior row that no key of ABLATIONS or PRIORS makes any more."""
    labels = {label for label, _, _ in ABLATIONS.values()} | {label for label, _ in PRIORS.values()}
    return row.get("kind") in ("removes", "adds", "prior") and row["label"] not in labels


def quality_command(args) -> int:
    check_args(args)
    quiet_tensorflow()
    from vae_cli.data import load_eval_split

    todo = variants(args)
    folder = Path(args.test_data).expanduser()
    x_test = load_eval_split(f"idx:{folder}", validation_split=0.1, seed=0, all_if_no_test=True).x
    if args.samples > len(x_test):  # vae-eval would refuse it, but only after the first training
        raise UsageError(f"--samples: {args.samples:,} samples need as many test digits, and {folder} holds "
                         f"{len(x_test):,}; use --samples {len(x_test)} or fewer")
    source = f"the MNIST test set (t10k IDX files in {folder.name}/)"
    if args.test_examples:
        x_test = x_test[:args.test_examples]
    floor = pixel_entropy(x_test)
    json_path = Path(args.json) if args.json else Path(args.out) / "quality.json"
    rows = _saved_rows(json_path) if args.reuse else []  # a row stays until the one replacing it is done
    if not rows and not todo:
        raise UsageError(f"--reuse: {json_path} has no rows to show, and this call trains none")

    def log(message):
        print(message, flush=True)

    def save():
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"rows": rows, "protocol": protocol(rows, source, floor),
                                         "test_pixel_entropy": floor}, indent=2) + "\n")

    dropped = [row for row in rows if _obsolete(row)]
    for row in dropped:
        log(f"{row['label']}: dropped from {json_path} (no ablation or prior of this script makes it any more)")
    if dropped:
        rows = [row for row in rows if row not in dropped]
        save()
    for label, preset, changes, kind in todo:
        old = next((i for i, r in enumerate(rows) if r["label"] == label), None)
        want = requested(preset, changes, kind, args)
        if old is not None and rows[old].get("requested") == want:
            log(f"{label}: kept from {json_path}")
            continue
        row = (old is not None and rescore_samples(rows[old], want, args, log)) or \
            score(label, preset, changes, kind, args, log=log)
        if old is None:
            rows.append(row)
        else:
            rows[old] = row
        save()  # every finished row is kept at once
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
