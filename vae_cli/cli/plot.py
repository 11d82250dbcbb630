"""vae-plot: redraw a run's figures from its saved weights, into RUN/plots/ by default."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import SAMPLER_HELP, Parser, float_in, int_in, quiet_tensorflow, run_main, sampler_arg

ALL = ("latent", "manifold", "recon", "samples", "interpolation", "traversal", "loss")

EXAMPLES = """\
examples:
  vae-plot outputs/20261123-101500-conv
  vae-plot outputs/20261123-101500-conv --what manifold --grid 20 --range 3 --out figs/
  vae-plot outputs/20261123-101500-conv --what latent,traversal --dataset idx:data/mnist-t10k
  vae-plot outputs/20261123-120000-latent16 --what latent --tsne
  vae-plot outputs/20261123-120000-latent16 --what samples --sampler gmm:20

figures: latent (z_mean scatter; PCA for latent_dim > 2, or t-SNE with --tsne), manifold (decoded
grid; one per class for a conditional run), recon, samples, interpolation, traversal (one row per
latent dimension swept over [-3, 3], the others at a held-out image's z_mean), loss. For a run
trained with a learned prior (--prior mog/vamp) the samples come from that prior, and the 2-D
manifold and the traversal span its mean +- R of its standard deviations.
The held-out split is the one the run validated on (same seed), or the test split of --dataset.
"""


def figure_list(text: str) -> tuple[str, ...]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in (*ALL, "all")]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown figure(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(ALL)} or all, comma separated")
    return ALL if "all" in names else tuple(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vae-plot", description="Redraw the figures of a trained run from its saved "
                    "weights, without touching the files training wrote.", epilog=EXAMPLES)
    parser.add_argument("run", metavar="RUN",
                        help="a run directory written by vae-train, or pretrained:mnist (shipped with vae-cli)")
    parser.add_argument("--what", type=figure_list, default=ALL, metavar="LIST",
                        help=f"comma-separated figures: {', '.join(ALL)} or all (default: all)")
    parser.add_argument("--dataset", help="draw on another dataset's held-out images (same image shape "
                        "as the run); default: the run's own dataset and split")
    parser.add_argument("--grid", type=int_in(2, 100), default=30, help="manifold: points per side (default: 30)")
    parser.add_argument("--range", type=float_in(0, 1000, low_open=True), default=None, dest="value_range",
                        metavar="R", help="manifold: z from -R to R (default: 4); traversal: -R to R (default: 3)")
    parser.add_argument("--tsne", action="store_true",
                        help="latent: t-SNE instead of PCA when latent_dim > 2 (needs scikit-learn)")
    parser.add_argument("--index", type=int_in(0, 10**9), default=0,
                        help="traversal: the held-out image whose z_mean is the starting point (default: 0)")
    parser.add_argument("--seed", type=int_in(0, 2**31 - 1), default=0,
                        help="seeds the samples and the interpolation pairs (default: 0)")
    parser.add_argument("--sampler", type=sampler_arg, default=None, metavar="prior|gmm[:K]",
                        help=f"samples: {SAMPLER_HELP} (default: prior)")
    parser.add_argument("--out", help="folder for the figures (default: RUN/plots/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sampler is not None and "samples" not in args.what:
        parser.error("--sampler only applies to the samples figure; add samples to --what")
    return run_main(parser.prog, lambda: plot_command(args))


def _with_history(run_path: Path, what: tuple[str, ...]):
    """(figures to draw, history.csv as a dict or None); with `all`, a missing history only
    drops the loss curve, with a note."""
    from ..errors import UsageError
    from ..run import read_history

    if "loss" not in what:
        return what, None
    try:
        return what, read_history(run_path)
    except UsageError as e:
        if what != ALL:  # asked for by name: say why it cannot be drawn
            raise
        print(f"vae-plot: note: loss not drawn: {e}", file=sys.stderr)
        return tuple(w for w in what if w != "loss"), None


def _held_out(run, dataset: str | None, what: tuple[str, ...]):
    """The held-out images; when the run's own data cannot be loaded (moved, deleted), the error
    names the figures that need it and --dataset."""
    from ..errors import UsageError
    from ..figures import needs_data
    from ..run import load_held_out

    try:
        return load_held_out(run, dataset)
    except UsageError as e:
        if dataset:
            raise
        needing = [name for name in what if needs_data([name], run.config.latent_dim)]
        raise UsageError(f"{e} ({', '.join(needing)} {'is' if len(needing) == 1 else 'are'} drawn from "
                         f"the run's held-out images: point --dataset at the same data)") from None


def plot_command(args: argparse.Namespace) -> int:
    from ..data import check_dataset_spec, same_source
    from ..errors import UsageError
    from ..run import plot_folder, read_run_config, run_location

    run_path = run_location(args.run)
    config, _, _, _ = read_run_config(run_path)
    if args.dataset:
        check_dataset_spec(args.dataset)
    if args.tsne and config.latent_dim <= 2:
        raise UsageError(f"--tsne: this run's latent space is {config.latent_dim}-D and is drawn as it is; "
                         "t-SNE is for latent_dim > 2")
    out = plot_folder(run_path, args.out)

    quiet_tensorflow()
    from ..figures import FigureSet, draw, needs_data
    from ..run import load_run
    from ..samplers import learned_prior, make_sampler

    run = load_run(run_path)
    what, history = _with_history(run_path, args.what)
    held = _held_out(run, args.dataset, what) if needs_data(what, config.latent_dim) else None
    if "traversal" in what and args.index >= len(held.x):
        raise UsageError(f"--index: expected 0 to {len(held.x) - 1} (the held-out split has "
                         f"{len(held.x):,} images), got {args.index}")
    ranges = {} if args.value_range is None else {"value_range": args.value_range,
                                                    "traversal_range": args.value_range}
    prior = learned_prior(config, run.vae, run.encoder)  # None: N(0, I)
    sampler = None
    if "samples" in what and (args.sampler or prior is not None):
        sampler = make_sampler(run, args.sampler or "prior",
                               note=lambda line: print(f"vae-plot: {line}", file=sys.stderr))
    # the run's class names, unless the labels come from other data (which numbers its own classes)
    own_labels = run.conditional or not args.dataset or same_source(args.dataset, config.dataset)
    figures = FigureSet(run.encoder, run.decoder, config.latent_dim, None if held is None else held.x,
                        None if held is None else held.y,
                        num_classes=run.num_classes if run.conditional else None, history=history,
                        class_names=run.data.get("class_names") if own_labels else None,
                        grid=args.grid, seed=args.seed, tsne=args.tsne, index=args.index, sampler=sampler,
                        prior=prior, **ranges)
    if held is not None:
        print(f"data: {held.source}; {len(held.x):,} held-out images ({held.split})")
    for path in draw(figures, out, what):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
