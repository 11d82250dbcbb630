"""benchmarks/speed.py's report: the results dict as the printed table and as Markdown for the README."""

from __future__ import annotations

import time

# (key, target ratio, higher is better) from issue 4
TARGETS = {
    "mlp_vs_tutorial": (2.5, True), "conv_vs_tutorial": (1.3, True), "mlp400_vs_torch": (1.0, True),
    "manifold_speedup": (150.0, True), "help_seconds": (0.5, False), "arg_error_seconds": (0.5, False),
}  # the end-to-end targets (<= 0.7x the tutorial script's time, peak RSS < 1.5 GB): benchmarks/fair.py


def _verdict(res: dict, key: str) -> tuple[str, str]:
    target, higher = TARGETS[key]
    t = res["targets"].get(key)
    unit = "x" if key.endswith(("_tutorial", "_torch", "_speedup", "_ratio")) else (" s" if "seconds" in key else " GB")
    bound = f"{'>=' if higher else '<='} {target:g}{unit}"
    return bound, ("-" if t is None else "yes" if t["met"] else "**no**")


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def format_table(res: dict) -> str:
    m = res["machine"]
    lines = [f"benchmarks/speed.py on {m['cpu']}, {m['cores']} cores, GPU: {'yes' if m['gpu'] else 'none'}; "
             f"load average {m['load_average_start']} at start, {m['load_average_end']} at end", "",
             f"training: {res['data']}, medians of epochs 2-{res['epochs']}; vae-cli column = training "
             "batches only (whole epoch incl. validation + callbacks in brackets)", "",
             _row(["workload", "vae-cli", "baseline", "ratio", "target", "met"]), _row(["---"] * 6)]
    busiest = max((m["load_average_start"] or [0])[0], (m["load_average_end"] or [0])[0])
    if busiest > m["cores"]:
        lines[4:4] = [f"WARNING: load average {busiest:.1f} on {m['cores']} cores: other processes competed for "
                      "the CPU, so timings are noisy, and PyTorch's OpenMP threads slow down far more than "
                      "TensorFlow's under contention (its ratio is not trustworthy). Rerun on a quiet machine.", ""]
    names = {"mlp": "`mlp` preset (784-512-2) training, samples/s",
             "conv": "`conv` preset training, samples/s (same architecture)"}
    for label, key in (("mlp", "mlp_vs_tutorial"), ("conv", "conv_vs_tutorial")):
        r = res[label]
        lines.append(_row([names[label], f"{r['ours_train']:,.0f} ({r['ours_epoch']:,.0f})",
                           f"tutorial Keras {r['tutorial']:,.0f}", f"{r['ratio']:.2f}x", *_verdict(res, key)]))
    r = res["mlp400"]
    torch = r["torch"]
    if "samples_per_second" in torch:
        lines.append(_row(["MLP 784-400-20 training, samples/s", f"{r['ours_train']:,.0f} ({r['ours_epoch']:,.0f})",
                           f"PyTorch {m['torch']} eager {torch['samples_per_second']:,.0f}",
                           f"{res['targets']['mlp400_vs_torch']['value']:.2f}x", *_verdict(res, "mlp400_vs_torch")]))
    else:
        lines.append(_row(["MLP 784-400-20 vs PyTorch eager", "-", f"skipped: {torch['skipped']}", "-", "-", "-"]))
    lines.append(_row(["MLP 784-400-20 training, samples/s", f"{r['ours_train']:,.0f}",
                       f"default Keras {r['tutorial']:,.0f}", f"{r['ratio']:.2f}x", "-", "-"]))
    mf = res["manifold"]
    lines.append(_row(["30x30 manifold (decode + figure)", f"{mf['ours_seconds']:.2f} s",
                       f"per-point loop {mf['per_point_loop_seconds']:.1f} s ({mf['per_point_calls_timed']} "
                       "calls timed, scaled to 900)", f"{mf['speedup']:.0f}x", *_verdict(res, "manifold_speedup")]))
    st = res["startup"]
    lines.append(_row(["`vae-train --help`", f"{st['help']:.2f} s", "-", "-", *_verdict(res, "help_seconds")]))
    lines.append(_row(["argument error (argparse / Config)", f"{st['arg_error_argparse']:.2f} / "
                       f"{st['arg_error_config']:.2f} s", "-", "-", *_verdict(res, "arg_error_seconds")]))
    lines += ["", f"fp32 matmul peak (TensorFlow, 2048x2048, default threads): {res['matmul_peak_gflops']:.0f} GFLOP/s",
              "", _row(["workload", "implementation", "train MFLOP/sample", "samples/s", "GFLOP/s", "of peak"]),
              _row(["---"] * 6)]
    for f in res["flops"]:
        lines.append(_row([f["workload"], f["who"], f"{f['train_mflop_per_sample']:.1f}",
                           f"{f['samples_per_second']:,.0f}", f"{f['gflops']:.1f}", f"{f['fraction_of_peak']:.0%}"]))
    return "\n".join(lines)


def markdown_report(res: dict, command: str) -> str:
    """The table as a README fragment that says when, with what command and on which versions."""
    m = res["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in (("Python", m["python"]), ("PyTorch", m["torch"])) if v)
    note = ("**Quick run** (`--quick`: fewer epochs and manifold points); rerun without it for the full "
            "table.\n\n" if res["quick"] else "")
    return (f"{note}Measured {time.strftime('%Y-%m-%d')} with `{command}` ({versions}).\n\n"
            f"{format_table(res)}\n")
