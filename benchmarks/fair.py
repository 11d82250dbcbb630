"""The fair benchmark (issue 12): vae-cli's commands against what users run today, every workload
in its own fresh process, repeated and interleaved (A B A B ...), reported as ratios of medians.

    python benchmarks/fair.py                     # 3 rounds (the end-to-end race: 2); 30+ minutes on 2 cores
    python benchmarks/fair.py --quick             # 1 round, 1 and 2 epochs, small end to end: checks the harness
    python benchmarks/fair.py --only mlp,help     # some groups (or group/workload ids) only

Training speed is whole-epoch wall clock of the real command: t(long) - t(short) over the epochs
between them, so everything a run does per epoch counts (validation, figures, checkpoints) and
start-up does not. The baselines (benchmarks/baselines.py, benchmarks/tutorial.py) train the same
architecture on the same 4,500 digits at batch 128, which the harness checks from the trainable
parameter counts each run reports. Each run's peak RSS and, from its time-stamped "Epoch i/N"
lines, its start-up (command to the first epoch) and wind-down (end of the last epoch to exit)
are recorded too. Needs TensorFlow, JAX and `pip install torch==2.13.0` for every baseline; a
workload that fails is reported as failed and the rest still run.

Results go to --json (default benchmarks/fair-results.json) and a Markdown table on stdout,
headed by the machine (CPU, cores, load average before and after, versions). Workloads are the
WORKLOADS dict: a new engine or flag of vae-train is one more entry in a group, and every
"ours" entry is compared with every baseline of its group.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as `python benchmarks/fair.py`: import this checkout
    sys.path.insert(0, str(HERE.parent))

from benchmarks import measure  # noqa: E402
from benchmarks.digits import TRAIN_DIGITS, shifted_digits_npz  # noqa: E402

PY = sys.executable


@dataclasses.dataclass(frozen=True)
class Group:
    """Workloads compared with each other. measure "epochs": samples/s from t(long) - t(short)
    epochs; "once": one process per round, its wall seconds and peak RSS."""

    title: str
    measure: str
    epochs: tuple[int, ...] = (1,)
    quick_epochs: tuple[int, ...] = (1,)
    rounds: int | None = None  # at most this many rounds (None: every round)


@dataclasses.dataclass(frozen=True)
class Context:
    """What a workload's command line is built from, per run."""

    epochs: int
    out: Path  # an empty folder of this run
    e2e_npz: str
    quick: bool


@dataclasses.dataclass(frozen=True)
class Workload:
    label: str
    role: str  # "ours" or "baseline"
    argv: Callable[[Context], list[str]]
    env: dict = dataclasses.field(default_factory=dict)


def vae_train(*flags: str) -> Callable[[Context], list[str]]:
    """The real `vae-train` command (this checkout's) on the bundled digits."""
    return lambda c: [PY, "-m", "vae_cli.cli.train", *flags, "--dataset", "mnist-5k", "--epochs", str(c.epochs),
                      "--name", "fair", "--out", str(c.out)]


def baseline(framework: str, *flags: str) -> Callable[[Context], list[str]]:
    return lambda c: [PY, str(HERE / "baselines.py"), framework, *flags, "--epochs", str(c.epochs)]


def e2e_vae_train(c: Context) -> list[str]:
    return [PY, "-m", "vae_cli.cli.train", "--preset", "conv", "--latent-dim", "2", "--epochs", str(c.epochs),
            "--dataset", f"npz:{c.e2e_npz}", "--out", str(c.out)]


def e2e_tutorial(c: Context) -> list[str]:
    return [PY, str(HERE / "tutorial.py"), c.e2e_npz, str(c.out), str(c.epochs), "3" if c.quick else "30"]


GROUPS = {
    "mlp": Group("`mlp` preset (MLP 784-512-2), training samples/s", "epochs", (1, 41), (1, 2)),
    "mlp400": Group("MLP 784-400-20 (pytorch/examples' VAE), training samples/s", "epochs", (1, 41), (1, 2)),
    "conv": Group("`conv` preset (the seed conv VAE), training samples/s", "epochs", (1, 4), (1, 2)),
    "help": Group("`vae-train --help`, seconds", "once"),
    "e2e": Group("end to end: `conv` preset with all its figures vs the tutorial script, seconds", "once", (5,),
                 (1,), rounds=2),
}
TF, JAX = {"KERAS_BACKEND": "tensorflow"}, {"KERAS_BACKEND": "jax"}
WORKLOADS = {
    "mlp/vae-train": Workload("vae-train --preset mlp (auto: JAX)", "ours", vae_train("--preset", "mlp")),
    "mlp/vae-train-tf": Workload("vae-train --preset mlp --backend tensorflow", "ours",
                                 vae_train("--preset", "mlp", "--backend", "tensorflow")),
    "mlp/keras-tf": Workload("tutorial Keras, TensorFlow", "baseline", baseline("keras", "--arch", "mlp"), TF),
    "mlp/keras-jax": Workload("tutorial Keras, JAX", "baseline", baseline("keras", "--arch", "mlp"), JAX),
    "mlp400/vae-train": Workload("vae-train --preset mlp --hidden-dim 400 --latent-dim 20 (auto: JAX)", "ours",
                                 vae_train("--preset", "mlp", "--hidden-dim", "400", "--latent-dim", "20")),
    "mlp400/vae-train-tf": Workload("the same with --backend tensorflow", "ours",
                                    vae_train("--preset", "mlp", "--hidden-dim", "400", "--latent-dim", "20",
                                              "--backend", "tensorflow")),
    "mlp400/torch": Workload("PyTorch eager", "baseline",
                             baseline("torch", "--arch", "mlp", "--hidden-dim", "400", "--latent-dim", "20")),
    "conv/vae-train": Workload("vae-train --preset conv (auto: TensorFlow)", "ours", vae_train("--preset", "conv")),
    "conv/keras-tf": Workload("tutorial Keras, TensorFlow", "baseline", baseline("keras", "--arch", "conv"), TF),
    "conv/keras-jax": Workload("tutorial Keras, JAX", "baseline", baseline("keras", "--arch", "conv"), JAX),
    "conv/torch": Workload("PyTorch eager twin", "baseline", baseline("torch", "--arch", "conv")),
    "help/vae-train": Workload("vae-train --help", "ours", lambda c: [PY, "-m", "vae_cli.cli.train", "--help"]),
    "e2e/vae-train": Workload("vae-train --preset conv --latent-dim 2 --dataset npz:DIGITS", "ours", e2e_vae_train),
    "e2e/tutorial": Workload("the tutorial script (benchmarks/tutorial.py)", "baseline", e2e_tutorial, TF),
}
E2E_DIGITS, QUICK_E2E_DIGITS = (60_000, 10_000), (2_000, 500)


# ---------------------------------------------------------------- one run


def _parameters(run: measure.Measured, out: Path) -> int | None:
    """Trainable parameters as the run reported them: a baseline's JSON line, vae-train's vae.txt
    summary in its run directory, or the tutorial script's `parameters:` line."""
    try:
        return int(run.json_line()["parameters"])
    except (RuntimeError, KeyError, ValueError):
        pass
    for summary in out.glob("*/vae.txt"):
        found = re.search(r"Trainable params: ([\d,]+)", summary.read_text(encoding="utf-8"))
        if found:
            return int(found.group(1).replace(",", ""))
    found = re.search(r"^parameters: (\d+)$", run.output, re.MULTILINE)
    return int(found.group(1)) if found else None


def _phases(run: measure.Measured) -> tuple[float | None, float | None]:
    """(command to the first epoch's start, end of the last epoch to exit) from Keras-style lines:
    "Epoch i/N" when an epoch starts, "steps/steps - ..." when it ends. None without them."""
    starts = [i for i, (_, line) in enumerate(run.lines) if re.match(r"Epoch \d+/\d+", line)]
    if not starts:
        return None, None
    ends = [t for t, line in run.lines[starts[-1]:] if re.match(r"\s*\d+/\d+ - ", line)]
    return run.lines[starts[0]][0], (run.seconds - ends[0]) if ends else None


def run_once(workload: Workload, context: Context) -> dict:
    argv = workload.argv(context)
    context.out.mkdir(parents=True, exist_ok=True)
    run = measure.run_measured(argv, env=measure.child_env(**workload.env), check=False)
    record = {"epochs": context.epochs, "seconds": run.seconds, "peak_rss_bytes": run.peak_rss_bytes,
              "exit_code": run.exit_code}
    if run.exit_code != 0:
        record["error"] = run.tail(1500)
    else:
        record["startup_seconds"], record["wind_down_seconds"] = _phases(run)
        record["parameters"] = _parameters(run, context.out)
        try:
            child = run.json_line()
            record["child"] = {k: child[k] for k in ("framework", "n_train", "epoch_seconds") if k in child}
        except RuntimeError:
            pass
    shutil.rmtree(context.out, ignore_errors=True)
    return record


# ---------------------------------------------------------------- rounds, medians, ratios


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(group: Group, rounds: list[dict]) -> dict:
    """One workload's medians over its rounds (each round: {"runs": [...]} with one run per
    epoch count; for "epochs" groups also the round's samples/s)."""
    ok = [r for r in rounds if all(run["exit_code"] == 0 for run in r["runs"])]
    last = [r["runs"][-1] for r in ok]
    summary = {"rounds_ok": len(ok), "rounds_failed": len(rounds) - len(ok),
               "seconds": _median(run["seconds"] for run in last),
               "peak_rss_bytes": _median(run["peak_rss_bytes"] for run in last),
               "startup_seconds": _median(run.get("startup_seconds") for run in last),
               "wind_down_seconds": _median(run.get("wind_down_seconds") for run in last),
               "parameters": sorted({run["parameters"] for r in ok for run in r["runs"]
                                     if run.get("parameters") is not None})}
    if group.measure == "epochs":
        summary["samples_per_second"] = _median(r["samples_per_second"] for r in ok)
    return summary


def round_rate(runs: list[dict], n_train: int) -> float | None:
    """Samples per second of the epochs between the short and the long run; None when the long run
    was not slower (noise larger than the work: too few epochs)."""
    short, long = runs[0], runs[-1]
    extra = long["seconds"] - short["seconds"]
    return n_train * (long["epochs"] - short["epochs"]) / extra if extra > 0 else None


def compare(groups: dict, workloads: dict, results: dict) -> list[dict]:
    """Every "ours" workload against every baseline of its group, as a ratio of their medians:
    speed_up > 1 means vae-cli is faster (samples/s ratio, or time ratio for "once" groups)."""
    rows = []
    for key, group in groups.items():
        members = [w for w in workloads if w.split("/")[0] == key and w in results]
        for ours in (w for w in members if workloads[w].role == "ours"):
            for base in (w for w in members if workloads[w].role == "baseline"):
                a, b = results[ours]["median"], results[base]["median"]
                if group.measure == "epochs":
                    value = (a["samples_per_second"] / b["samples_per_second"]
                             if a["samples_per_second"] and b["samples_per_second"] else None)
                else:
                    value = b["seconds"] / a["seconds"] if a["seconds"] and b["seconds"] else None
                rss = a["peak_rss_bytes"] / b["peak_rss_bytes"] if a["peak_rss_bytes"] and b["peak_rss_bytes"] else None
                rows.append({"group": key, "ours": ours, "baseline": base, "speed_up": value, "peak_rss_ratio": rss})
    return rows


def run_benchmark(groups: dict, workloads: dict, *, rounds: int, quick: bool, work: Path,
                  e2e_npz: str = "", log=print, after_round=None) -> dict:
    """Round after round, every workload in turn (short then long epochs for "epochs" groups);
    then medians per workload, ratios per group and whether each group's runs had one architecture.
    after_round(results so far) is called after every round."""
    per_round: dict[str, list[dict]] = {w: [] for w in workloads}
    for r in range(rounds):
        for wid, workload in workloads.items():
            group = groups[wid.split("/")[0]]
            if group.rounds is not None and r >= group.rounds:
                continue
            runs = []
            for epochs in group.quick_epochs if quick else group.epochs:
                context = Context(epochs=epochs, out=work / wid.replace("/", "-") / f"{r}-{epochs}",
                                  e2e_npz=e2e_npz, quick=quick)
                runs.append(run_once(workload, context))
                status = f"exit {runs[-1]['exit_code']}" if runs[-1]["exit_code"] else "ok"
                log(f"[fair] round {r + 1}/{rounds} {wid} ({epochs} epochs): {runs[-1]['seconds']:.1f} s, "
                    f"{runs[-1]['peak_rss_bytes'] / 2**20:,.0f} MiB, {status}")
            entry = {"round": r + 1, "runs": runs}
            if group.measure == "epochs" and all(run["exit_code"] == 0 for run in runs):
                entry["samples_per_second"] = round_rate(runs, TRAIN_DIGITS)
            per_round[wid].append(entry)
        if after_round:
            after_round(_results(groups, workloads, per_round))
    return _results(groups, workloads, per_round)


def _results(groups: dict, workloads: dict, per_round: dict) -> dict:
    results = {wid: {"label": w.label, "role": w.role, "group": wid.split("/")[0], "env": w.env,
                     "rounds": per_round[wid], "median": summarise(groups[wid.split("/")[0]], per_round[wid])}
               for wid, w in workloads.items() if per_round[wid]}
    architecture = {}
    for key in {wid.split("/")[0] for wid in results}:
        counts = {p for r in results.values() if r["group"] == key for p in r["median"]["parameters"]}
        architecture[key] = {"parameters": sorted(counts), "same": len(counts) <= 1}
    return {"workloads": results, "comparisons": compare(groups, workloads, results),
            "architecture": {k: architecture[k] for k in groups if k in architecture}}


# ---------------------------------------------------------------- report


def _value(group: Group, median: dict) -> str:
    if group.measure == "epochs":
        rate = median["samples_per_second"]
        return "-" if rate is None else f"{rate:,.0f} samples/s"
    return "-" if median["seconds"] is None else f"{median['seconds']:.2f} s"


def markdown(res: dict) -> str:
    """The results as a README fragment: the machine and protocol, speeds and ratios, then each
    run's phases and peak memory."""
    m = res["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    groups = {k: Group(**g) for k, g in res["groups"].items()}
    capped = [f"{k}: {g.rounds}" for k, g in groups.items() if g.rounds is not None and g.rounds < res["rounds"]]
    before, after = res["load_average_before"] or [0.0] * 3, res["load_average_after"] or [0.0] * 3
    lines = [f"Measured {m['date']} with `{res['command']}` on {m['cpu_description']}, {m['memory_gib']} GiB RAM, "
             f"GPU: {'yes' if m['gpu'] else 'none'}; Python {m['python']}, {versions}. Load average (1, 5, 15 min) "
             f"{before} before, {after} after.",
             "",
             f"Every workload is a fresh process; "
             f"{'1 round' if res['rounds'] == 1 else str(res['rounds']) + ' interleaved rounds'}"
             f"{' (' + ', '.join(capped) + ')' if capped else ''}, medians over rounds; speed-up is the ratio of "
             f"medians, above 1 when vae-cli is faster. Training samples/s = digits x (long - short epochs) / "
             f"(t(long) - t(short)) of the whole command; {res['data']}.", ""]
    busiest = max(before[0], after[0])
    if busiest > m["cores"]:
        lines += [f"WARNING: load average {busiest:.1f} on {m['cores']} cores: other processes competed for the "
                  "CPU, so every timing is noisy, and PyTorch's threads slow down far more than the others under "
                  "contention. Rerun on a quiet machine before quoting these numbers.", ""]
    lines += ["| workload | implementation | median | vae-cli speed-up |", "|---|---|---|---|"]
    speed_ups = {}
    for c in res["comparisons"]:
        speed_ups.setdefault(c["baseline"], []).append(c)
    for key, group in groups.items():
        title = group.title
        for wid, w in res["workloads"].items():
            if w["group"] != key:
                continue
            cell = "; ".join(("-" if c["speed_up"] is None else f"{c['speed_up']:.2f}x")
                             + (f" ({res['workloads'][c['ours']]['label']})" if len(speed_ups[wid]) > 1 else "")
                             for c in speed_ups.get(wid, []))
            failed = f" ({w['median']['rounds_failed']} rounds failed)" if w["median"]["rounds_failed"] else ""
            lines.append(f"| {title} | {w['label']}{failed} | {_value(group, w['median'])} | {cell} |")
            title = ""  # once per group
    lines += ["", "| workload | implementation | command to first epoch, s | last epoch to exit, s | peak RSS, MiB |",
              "|---|---|---|---|---|"]
    for wid, w in res["workloads"].items():
        med = w["median"]
        cells = ["-" if v is None else f"{v:.1f}" for v in (med["startup_seconds"], med["wind_down_seconds"])]
        rss = "-" if med["peak_rss_bytes"] is None else f"{med['peak_rss_bytes'] / 2**20:,.0f}"
        lines.append(f"| {wid.split('/')[0]} | {w['label']} | {cells[0]} | {cells[1]} | {rss} |")
    mismatched = [k for k, a in res["architecture"].items() if not a["same"]]
    lines += ["", "Trainable parameters per group: " + ", ".join(
        f"{k} {'/'.join(f'{p:,}' for p in a['parameters']) or '-'}" for k, a in res["architecture"].items())
        + (f". MISMATCH in {', '.join(mismatched)}: those baselines do not train vae-cli's architecture."
           if mismatched else " (every implementation in a group trains the same number).")]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- command line


def _selected(only: str | None) -> dict:
    if not only:
        return dict(WORKLOADS)
    keys = [k.strip() for k in only.split(",") if k.strip()]
    unknown = [k for k in keys if k not in GROUPS and k not in WORKLOADS]
    if unknown:
        raise ValueError(f"--only: unknown {', '.join(unknown)}; expected groups ({', '.join(GROUPS)}) "
                         "or workload ids (group/name, see WORKLOADS in benchmarks/fair.py)")
    return {wid: w for wid, w in WORKLOADS.items() if wid in keys or wid.split("/")[0] in keys}


def benchmark(workloads: dict, *, rounds: int, quick: bool, command: str, groups: dict = GROUPS,
              json_path: Path | None = None,
              log=lambda message: print(message, file=sys.stderr, flush=True)) -> dict:
    """Everything one invocation measures, with the machine it ran on, as the JSON it writes
    (to json_path after every round too, so a long run interrupted late keeps its rounds)."""
    res = {"command": command, "quick": quick, "rounds": rounds, "machine": measure.machine(),
           "load_average_before": measure.load_average(),
           "groups": {k: dataclasses.asdict(g) for k, g in groups.items() if any(w.split("/")[0] == k
                                                                                for w in workloads)},
           "commands": {}}
    with tempfile.TemporaryDirectory(prefix="vae-fair-") as tmp:
        work = Path(tmp)
        e2e_npz = ""
        res["data"] = f"training on {TRAIN_DIGITS:,} of the 5,000 bundled MNIST digits, batch 128"
        if "e2e" in res["groups"]:
            e2e_npz = str(work / "digits.npz")
            n_train, n_test = QUICK_E2E_DIGITS if quick else E2E_DIGITS
            epochs = (groups["e2e"].quick_epochs if quick else groups["e2e"].epochs)[-1]
            res["data"] += (f"; end to end {epochs} epoch{'s' * (epochs > 1)} on "
                            f"{shifted_digits_npz(Path(e2e_npz), n_train, n_test)}")
        for wid, w in workloads.items():
            group = groups[wid.split("/")[0]]
            epochs = (group.quick_epochs if quick else group.epochs)[-1]
            res["commands"][wid] = " ".join(w.argv(Context(epochs, Path("OUT"), "DIGITS.npz", quick)))

        def save(results: dict) -> None:
            if json_path:
                partial = {**res, **results, "load_average_after": measure.load_average()}
                Path(json_path).write_text(json.dumps(partial, indent=2) + "\n", encoding="utf-8")

        res.update(run_benchmark(groups, workloads, rounds=rounds, quick=quick, work=work, e2e_npz=e2e_npz, log=log,
                                 after_round=save))
    res["load_average_after"] = measure.load_average()
    save(res)
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/fair.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 round, 1 and 2 epochs, a small end to end "
                        "(checks the harness; the numbers mean little)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: 3; --quick: 1)")
    parser.add_argument("--only", help="comma-separated groups or group/workload ids (default: all)")
    parser.add_argument("--json", default=str(HERE / "fair-results.json"), help="where to write the results "
                        "(default: benchmarks/fair-results.json)")
    args = parser.parse_args(argv)
    try:
        workloads = _selected(args.only)
    except ValueError as e:
        parser.error(str(e))
    rounds = 1 if args.quick else args.rounds
    if rounds < 1:
        parser.error(f"--rounds: expected an integer >= 1, got {rounds}")
    folder = Path(args.json).expanduser().absolute().parent
    if not (folder.is_dir() and os.access(folder, os.W_OK)):  # checked before the first minute of work
        parser.error(f"--json: cannot write into {folder}; give a file in an existing, writable folder")
    flags = [f"--only {args.only}" if args.only else "", "--quick" if args.quick else "",
             f"--rounds {args.rounds}" if args.rounds != 3 and not args.quick else ""]
    res = benchmark(workloads, rounds=rounds, quick=args.quick, json_path=Path(args.json),
                    command=" ".join(["python benchmarks/fair.py", *filter(None, flags)]))
    print(markdown(res))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
