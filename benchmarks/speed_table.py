"""benchmarks/speed.py's report: the results dict as the printed table and as Markdown for the docs."""

from __future__ import annotations

import time

# (key, target, higher is better) from issue 4. Its comparisons with other programs (training speed
# against tutorial Keras and PyTorch, end to end and peak RSS, --help) are benchmarks/fair.py's.
TARGETS = {"manifold_speedup": (150.0, True), "arg_error_seconds": (0.5, False)}


def _verdict(res: dict, key: str) -> tuple[str, str]:
    target, higher = TARGETS[key]
    met = res["targets"][key]["met"]
    bound = f"{'>=' if higher else '<='} {target:g}{' s' if key.endswith('_seconds') else 'x'}"
    return bound, "yes" if met else "**no**"


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def format_table(res: dict) -> str:
    m = res["machine"]
    lines = [f"benchmarks/speed.py on {m['cpu_description']}, GPU: {'yes' if m['gpu'] else 'none'}; "
             f"load average {m['load_average_start']} at start, {m['load_average_end']} at end", ""]
    busiest = max((m["load_average_start"] or [0])[0], (m["load_average_end"] or [0])[0])
    if busiest > m["cores"]:
        lines += [f"WARNING: load average {busiest:.1f} on {m['cores']} cores: other processes competed for "
                  "the CPU, so these timings are noisy. Rerun on a quiet machine.", ""]
    mf, st = res["manifold"], res["startup"]
    lines += [_row(["workload", "vae-cli", "compared with", "ratio", "target", "met"]), _row(["---"] * 6),
              _row(["30x30 manifold (decode + figure)", f"{mf['ours_seconds']:.2f} s",
                    f"per-point `predict` loop {mf['per_point_loop_seconds']:.1f} s ({mf['per_point_calls_timed']} "
                    "calls timed, scaled to 900)", f"{mf['speedup']:.0f}x", *_verdict(res, "manifold_speedup")]),
              _row(["`vae-train` argument error (argparse / Config)", f"{st['arg_error_argparse']:.2f} / "
                    f"{st['arg_error_config']:.2f} s", "-", "-", *_verdict(res, "arg_error_seconds")]),
              "",
              f"training: `vae-train --preset PRESET --dataset mnist-5k --epochs {res['epochs']}`, {res['data']}; "
              f"medians of epochs 2-{res['epochs']}. fp32 matmul peak (TensorFlow, 2048x2048, default threads): "
              f"{res['matmul_peak_gflops']:.0f} GFLOP/s", "",
              _row(["preset", "engine", "train MFLOP/sample", "samples/s (training batches)",
                    "samples/s (whole epochs)", "GFLOP/s", "of peak"]), _row(["---"] * 7)]
    for f in res["flops"]:
        lines.append(_row([f"`{f['workload']}`", f["backend"], f"{f['train_mflop_per_sample']:.1f}",
                           f"{f['samples_per_second']:,.0f}", f"{f['epoch_samples_per_second']:,.0f}",
                           f"{f['gflops']:.1f}", f"{f['fraction_of_peak']:.0%}"]))
    return "\n".join(lines)


def markdown_report(res: dict, command: str) -> str:
    """The table as a docs fragment that says when, with what command and on which versions."""
    m = res["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in (("Python", m["python"]), *m["versions"].items()) if v)
    note = ("**Quick run** (`--quick`: fewer epochs and manifold points); rerun without it for the full "
            "table.\n\n" if res["quick"] else "")
    return (f"{note}Measured {time.strftime('%Y-%m-%d')} with `{command}` ({versions}).\n\n"
            f"{format_table(res)}\n")
