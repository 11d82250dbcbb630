"""vae-sample: decode new images from a trained run (prior draws, given latent points, or a walk
between two held-out images) into a new folder of PNGs and .npy arrays."""

from __future__ import annotations

import argparse
import math
import sys

from .common import SAMPLER_HELP, Parser, ProgressLine, float_in, int_in, quiet_tensorflow, run_main, sampler_arg

MAX_SAMPLES = 100_000

EXAMPLES = """\
examples:
  vae-sample outputs/20261123-101500-conv -n 100 --seed 1 --out digits/
  vae-sample outputs/20261123-101500-conv --temperature 0.7 -n 64
  vae-sample outputs/20261123-101500-conv --sampler gmm -n 64
  vae-sample outputs/20261123-101500-conv --z "0.5,-1.2;0,0;-2,1"
  vae-sample outputs/20261123-101500-conv --interpolate 0 1 --steps 12
  vae-sample outputs/20261123-103000-cond --label 7 -n 16

writes sample-0001.png ... (one per image), grid.png, samples.npy (float32 (N, H, W, C) in [0, 1])
and z.npy (the latent points; labels.npy too for a conditional run) into --out, which must be new
or empty, or by default into a new RUN/generated/<YYYYmmdd-HHMMSS>/.
"""


def latent_points(text: str) -> tuple[tuple[float, ...], ...]:
    """'0.5,-1.2;0,0' -> ((0.5, -1.2), (0.0, 0.0)): points separated by ';', values by ','."""
    points = []
    for part in text.split(";"):
        try:
            point = tuple(float(v) for v in part.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers like 0.5,-1.2 (several points separated by ';'), "
                f"got {part.strip()!r}") from None
        if not all(math.isfinite(v) for v in point):
            raise argparse.ArgumentTypeError(f"expected finite numbers, got {part.strip()!r}")
        points.append(point)
    if len({len(p) for p in points}) != 1:
        raise argparse.ArgumentTypeError("every point needs the same number of values")
    return tuple(points)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vae-sample", description="Decode new images from a trained run.",
                    epilog=EXAMPLES)
    parser.add_argument("run", metavar="RUN",
                        help="a run directory written by vae-train, or pretrained:mnist (shipped with vae-cli)")
    parser.add_argument("-n", type=int_in(1, MAX_SAMPLES), default=None,
                        help="number of prior samples (default: 64)")
    parser.add_argument("--seed", type=int_in(0, 2**31 - 1), default=0,
                        help="seeds z (and --binarize); the same seed gives the same images (default: 0)")
    parser.add_argument("--temperature", type=float_in(0, 100), default=None,
                        help="z ~ N(0, T^2 I) (a mixture's components' spread times T): below 1 gives "
                        "cleaner, less varied images (default: 1)")
    parser.add_argument("--sampler", type=sampler_arg, default=None, metavar="prior|gmm[:K]",
                        help=SAMPLER_HELP + " (default: prior)")
    parser.add_argument("--z", type=latent_points, metavar="POINTS",
                        help="decode these latent points instead: 'z1,z2,...' and several separated by ';'")
    parser.add_argument("--interpolate", type=int_in(0, 10**9), nargs=2, metavar=("I", "J"),
                        help="walk between the latents (z_mean) of held-out images I and J")
    parser.add_argument("--steps", type=int_in(2, 1000), default=None,
                        help="--interpolate: images along the walk, both ends included (default: 10)")
    parser.add_argument("--dataset", help="--interpolate: take images I and J from this dataset's held-out "
                        "split (default: the run's own)")
    parser.add_argument("--label", type=int_in(0, 10**6), default=None,
                        help="conditional runs: draw this class (default: cycle through the classes)")
    parser.add_argument("--binarize", action="store_true",
                        help="draw each pixel from Bernoulli(x_hat): true samples of p(x|z), values 0/1")
    parser.add_argument("--out", help="a new or empty folder (default: RUN/generated/<YYYYmmdd-HHMMSS>/)")
    return parser


def _check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flags that make no sense together are refused before anything loads."""
    if args.z is not None and args.interpolate is not None:
        parser.error("--z and --interpolate are two different requests; give one of them")
    given = args.z is not None or args.interpolate is not None
    for flag, value in (("-n", args.n), ("--temperature", args.temperature), ("--sampler", args.sampler)):
        if given and value is not None:
            parser.error(f"{flag} applies to prior samples, not to --z or --interpolate")
    for flag, value in (("--steps", args.steps), ("--dataset", args.dataset)):
        if value is not None and args.interpolate is None:
            parser.error(f"{flag} only applies to --interpolate I J")


def _check_against_run(args, config, num_classes) -> None:
    from ..errors import UsageError

    if args.label is not None:
        if not config.conditional:
            raise UsageError("--label: this run is not conditional, so it cannot draw a chosen class; "
                             "train one with vae-train --conditional")
        if args.label >= num_classes:
            raise UsageError(f"--label: expected a class from 0 to {num_classes - 1}, got {args.label}")
    if args.z is not None and len(args.z[0]) != config.latent_dim:
        raise UsageError(f"--z: each point needs {config.latent_dim} values (this run's latent_dim), "
                         f"got {len(args.z[0])}")
    if args.binarize and config.likelihood != "bernoulli":
        raise UsageError(f"--binarize draws Bernoulli pixels, but this run's likelihood is "
                         f"{config.likelihood}; leave --binarize out")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_flags(parser, args)
    return run_main(parser.prog, lambda: sample_command(args))


def _walk(run, args):
    """The --interpolate request: images I and J of the held-out split, walked in latent space."""
    from ..data import one_hot
    from ..errors import UsageError
    from ..run import load_held_out
    from ..latent import interpolate_images

    held = load_held_out(run, args.dataset)
    i, j = args.interpolate
    if max(i, j) >= len(held.x):
        raise UsageError(f"--interpolate: indexes must be 0 to {len(held.x) - 1} (the held-out split "
                         f"has {len(held.x):,} images), got {i} {j}")
    labels = one_hot(held.y[[i, j]], run.num_classes) if run.conditional else None
    fixed = None if args.label is None else one_hot([args.label], run.num_classes)[0]
    return interpolate_images(run.encoder, run.decoder, held.x[[i, j]], args.steps or 10, labels, fixed)


def sample_command(args: argparse.Namespace) -> int:
    from ..data import check_dataset_spec
    from ..generated import check_output_folder, new_output_folder, write_samples
    from ..run import GENERATED_DIR, check_can_create, read_run_config, run_location

    run_path = run_location(args.run)
    config, _, num_classes, _ = read_run_config(run_path)
    _check_against_run(args, config, num_classes)
    if args.dataset:
        check_dataset_spec(args.dataset)
    out = check_output_folder(args.out) if args.out else None
    if out is None:
        check_can_create(run_path / GENERATED_DIR)

    quiet_tensorflow()
    from ..data import binarize
    from ..latent import generate_batches, pixel_rng
    from ..run import load_run
    from ..samplers import make_sampler

    run = load_run(run_path)
    classes = num_classes if config.conditional else None
    if args.interpolate is not None:
        walk = _walk(run, args)
        if args.binarize:
            walk = walk._replace(images=binarize(walk.images, pixel_rng(args.seed)))
        batches, total = [walk], len(walk.z)
        title = f"Latent interpolation, held-out image {args.interpolate[0]} to {args.interpolate[1]}"
    else:
        total = len(args.z) if args.z else args.n or 64
        temperature = 1.0 if args.temperature is None else args.temperature
        z, title = args.z, "Decoded latent points" if args.z else f"Samples, seed {args.seed}"
        if z is None:
            sampler = make_sampler(run, args.sampler or "prior", note=lambda line: print(f"vae-sample: {line}",
                                                                                         file=sys.stderr))
            if sampler.mixture is not None:  # N(0, I) is drawn batch by batch below, as before
                z = sampler(total, seed=args.seed, temperature=temperature)
                title = f"Samples from {sampler.description}, seed {args.seed}"
        batches = generate_batches(run.decoder, config.latent_dim, n=total, z=z, seed=args.seed,
                                   temperature=temperature, num_classes=classes, label=args.label,
                                   binary=args.binarize)
    folder = out or new_output_folder(run_path / GENERATED_DIR)
    ncols = total if args.interpolate else (classes if args.label is None and classes else None)
    arrays = write_samples(folder, batches, total, title=title, ncols=ncols,
                           progress=ProgressLine("vae-sample"))
    print(f"wrote {total:,} images to {folder}/ (sample-*.png, grid.png, "
          f"{', '.join(p.name for p in arrays)})")
    return 0

if __name__ == "__main__":
    sys.exit(main())
