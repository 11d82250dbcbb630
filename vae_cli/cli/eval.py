"""vae-eval: held-out -ELBO, its parts, the importance-weighted bound on -log p(x) and the active
units of a trained run; prints a table and writes RUN/eval.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..sample_quality import MAX_SAMPLES, MIN_SAMPLES
from .common import SAMPLER_HELP, Parser, ProgressLine, float_in, int_in, quiet_tensorflow, run_main, sampler_arg

EXAMPLES = """\
examples:
  vae-eval outputs/20261123-101500-conv
  vae-eval outputs/20261123-101500-conv --iw-samples 1000
  vae-eval outputs/20261123-101500-conv --dataset idx:data/mnist-t10k --iw-samples 5000
  vae-eval outputs/20261123-101500-conv --dataset idx:data/mnist-t10k --samples 1000
  vae-eval outputs/20261123-101500-conv --samples 1000 --sampler gmm

numbers are nats per image on the held-out split: the test split of the dataset, or the same
seeded validation split the run used. The IW bound (Burda et al. 2015) with K samples is tighter
than -ELBO and approaches -log p(x) as K grows; its cost grows linearly with K.

--samples N adds sample quality: N generated images against N held-out real images, compared in
the features of a small classifier (the digit classifier shipped with vae-cli for 28x28 grey
images; else one trained on the run's own labelled images and cached in RUN; else pixel-PCA
space): Frechet distance, k-NN precision and recall (k=3) and, for a conditional run, how often
the classifier names the label a sample was drawn with. eval.json records the protocol.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vae-eval", description="Measure a trained run on held-out data.",
                    epilog=EXAMPLES)
    parser.add_argument("run", metavar="RUN",
                        help="a run directory written by vae-train, or pretrained:mnist (shipped with vae-cli)")
    parser.add_argument("--dataset", help="evaluate on this dataset's held-out split (same image shape as "
                        "the run); default: the run's own dataset and split")
    parser.add_argument("--iw-samples", type=int_in(0, 1_000_000), default=100, metavar="K",
                        help="importance samples per image for the IW bound; 0 skips it (default: 100)")
    parser.add_argument("--examples", type=int_in(0, 1 << 30), default=0, metavar="N",
                        help="evaluate the first N held-out images only, e.g. for a large K (default: 0 = all)")
    parser.add_argument("--binarize", action=argparse.BooleanOptionalAction, default=None,
                        help="binarise the held-out images once (each pixel 1 with probability equal to "
                        "its grey level, seeded by --seed), the literature's binarised-MNIST protocol "
                        "(default: as the run was trained, i.e. on for --binarize runs)")
    parser.add_argument("--batch-size", type=int_in(1, 65536), default=256, metavar="B",
                        help="images per encoder pass; memory does not grow with K (default: 256)")
    parser.add_argument("--seed", type=int_in(0, 2**31 - 1), default=0,
                        help="seeds the z samples, and with --samples the draws and reference images (default: 0)")
    parser.add_argument("--samples", type=int_in(MIN_SAMPLES, MAX_SAMPLES), default=None, metavar="N",
                        help="also measure sample quality with N samples against N held-out images "
                        "(see below; default: off)")
    parser.add_argument("--temperature", type=float_in(0, 100), default=None, metavar="T",
                        help="--samples: draw z ~ N(0, T^2 I) (a mixture's components' spread times T; "
                        "default: 1)")
    parser.add_argument("--sampler", type=sampler_arg, default=None, metavar="prior|gmm[:K]",
                        help=f"--samples: {SAMPLER_HELP} (default: prior)")
    parser.add_argument("--label", type=int_in(0, 10**6), default=None, metavar="L",
                        help="--samples, conditional runs: draw class L only and compare with held-out "
                        "images of class L (default: cycle through the classes)")
    parser.add_argument("--json", metavar="PATH",
                        help="where to write the report (default: RUN/eval.json; use it for a read-only run)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, value in (("--temperature", args.temperature), ("--label", args.label), ("--sampler", args.sampler)):
        if value is not None and args.samples is None:
            parser.error(f"{flag} only applies to sample quality; add --samples N")
    return run_main(parser.prog, lambda: eval_command(args))


def trained_on(config, data: dict, channels: int) -> str:
    """What the run learned from, from config.json: its dataset, image count and binarisation."""
    from ..evaluate import pixel_levels  # Keras: only once the command runs, never for --help

    count = f"{data['n_train']:,} training images" if isinstance(data.get("n_train"), int) else "training images"
    how = "dynamically binarised" if config.binarize else pixel_levels(channels)
    return f"{count} ({how}) of {data.get('used') or data.get('requested') or config.dataset}"


def eval_command(args: argparse.Namespace) -> int:
    from ..data import check_dataset_spec
    from ..errors import UsageError
    from ..run import EVAL_FILE, check_can_create, read_run_config, run_location

    run_path = run_location(args.run)
    config, _, num_classes, _ = read_run_config(run_path)
    if args.label is not None:
        if not config.conditional:
            raise UsageError("--label: this run is not conditional, so it cannot draw a chosen class")
        if args.label >= num_classes:
            raise UsageError(f"--label: expected a class from 0 to {num_classes - 1}, got {args.label}")
    if args.dataset:
        check_dataset_spec(args.dataset)
    report_path = Path(args.json).expanduser() if args.json else run_path / EVAL_FILE
    if report_path.is_dir():
        raise UsageError(f"--json: {report_path} is a folder; give a file path like {report_path / EVAL_FILE}")
    check_can_create(report_path.parent, "--json")

    quiet_tensorflow()
    import numpy as np

    from ..data import binarize, one_hot
    from ..evaluate import evaluate, format_table, report
    from ..priors import prior_components
    from ..run import load_held_out, load_run, write_json

    run = load_run(run_path)
    held = load_held_out(run, args.dataset)
    if args.samples:
        from ..sample_quality import check_reference

        check_reference(held, args.samples, args.label)
    x, y, split = held.x, held.y, held.split
    if args.examples and args.examples < len(x):
        x, y = x[:args.examples], None if y is None else y[:args.examples]
        split = f"the first {args.examples:,} of {split}"
    binarized = config.binarize if args.binarize is None else args.binarize
    if binarized:
        x = binarize(x, np.random.default_rng(args.seed))
    labels = one_hot(y, run.num_classes) if run.conditional else None
    prior = None if config.prior == "standard" else prior_components(config, run.vae, run.encoder)
    result = evaluate(run.encoder, run.decoder, x, likelihood=config.likelihood,
                      iw_samples=args.iw_samples, batch_size=args.batch_size, seed=args.seed,
                      labels=labels, prior=prior, progress=ProgressLine("vae-eval"))
    data = {"spec": args.dataset or config.dataset, "source": held.source, "split": split,
            "n_examples": len(x)}
    rep = report(result, run=str(run_path), data=data, trained_on=trained_on(config, run.data, x.shape[-1]),
                 likelihood=config.likelihood, seed=args.seed, conditional=run.conditional,
                 binarized=binarized, prior=config.prior, channels=x.shape[-1])
    if args.samples:
        from ..sample_quality import format_line, sample_quality
        from ..samplers import make_sampler

        def log(message):
            print(f"vae-eval: {message}", file=sys.stderr)

        sampler = make_sampler(run, args.sampler or "prior", note=log)
        rep["sample_quality"] = sample_quality(
            run, args.samples, reference=held, sampler="prior" if sampler.mixture is None else sampler,
            temperature=1.0 if args.temperature is None else args.temperature, seed=args.seed, label=args.label,
            log=log)
    write_json(report_path, rep)
    print(format_table(rep))
    if args.samples:
        print(format_line(rep["sample_quality"]))
    print(f"wrote {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
