"""Peak memory of one training epoch: a folder of N generated 64x64 PNGs streamed with tf.data,
against the same images held in memory (an npz), for N = 10,000 and 100,000.

    python benchmarks/folder_memory.py                 # the README table
    python benchmarks/folder_memory.py --sizes 2000    # a quick look

Each measurement is a fresh `python -m vae_cli.cli.train` process (one epoch, MLP VAE, figures
and metrics included, as a user would run it); its peak resident set size and wall time are
measured by benchmarks/measure.py (the kernel's peak RSS of that process alone). The images
(grey shapes in three class folders) are written under --workdir by a small process pool and
deleted at the end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as `python benchmarks/folder_memory.py`: import this checkout
    sys.path.insert(0, str(ROOT))

from benchmarks import measure  # noqa: E402

SIDE = 64
CLASSES = ("circle", "square", "triangle")
TRAIN_ARGS = ["--arch", "mlp", "--hidden-dim", "256", "--latent-dim", "2", "--epochs", "1",
              "--batch-size", "256", "--channels", "1"]


def _shape(rng: np.random.Generator, kind: str):
    from PIL import Image, ImageDraw

    image = Image.new("L", (SIDE, SIDE), int(rng.integers(0, 60)))
    draw = ImageDraw.Draw(image)
    r = int(rng.integers(8, 26))
    cx, cy = (int(v) for v in rng.integers(r, SIDE - r, 2))
    fill = int(rng.integers(120, 256))
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return image


def _write_chunk(job) -> np.ndarray:
    """Write images start..stop-1 as PNGs; returns them as uint8 for the in-memory contrast."""
    folder, start, stop = job
    rng = np.random.default_rng(start)
    pixels = np.empty((stop - start, SIDE, SIDE), np.uint8)
    for i in range(start, stop):
        kind = CLASSES[i % len(CLASSES)]
        image = _shape(rng, kind)
        image.save(Path(folder) / kind / f"{i:06d}.png")
        pixels[i - start] = np.asarray(image)
    return pixels


def generate(folder: Path, n: int, processes: int) -> Path:
    """n PNGs in class subfolders, and the same pixels as an npz; returns the npz path."""
    for kind in CLASSES:
        (folder / kind).mkdir(parents=True)
    chunks = [(str(folder), s, min(n, s + 2000)) for s in range(0, n, 2000)]
    with Pool(processes) as pool:
        pixels = np.concatenate(pool.map(_write_chunk, chunks))
    npz = folder.parent / f"{folder.name}.npz"
    np.savez(npz, x=pixels, y=np.arange(n) % len(CLASSES))
    return npz


def peak_rss_mib(dataset: str, out: Path) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one `vae-train` run in a fresh process."""
    r = measure.run_measured([sys.executable, "-m", "vae_cli.cli.train", "--dataset", dataset, *TRAIN_ARGS,
                              "--out", str(out)], env=measure.child_env(), check=False)
    if r.exit_code != 0:
        sys.exit(f"vae-train --dataset {dataset} failed:\n{r.tail(3000)}")
    return r.peak_rss_bytes / 2**20, r.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument("--processes", type=int, default=2, help="image writers")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vae-cli-memory-", dir=args.workdir))
    rows = []
    try:
        for n in args.sizes:
            t0 = time.perf_counter()
            npz = generate(work / f"pngs{n}", n, args.processes)
            print(f"wrote {n:,} PNGs in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            specs = (("folder (streamed)", f"folder:{work / f'pngs{n}'}"), ("npz (in memory)", f"npz:{npz}"))
            for source, spec in specs:
                rss, wall = peak_rss_mib(spec, work / "runs")
                rows.append((source, n, rss, wall))
                print(f"{source}, {n:,} images: peak RSS {rss:,.0f} MiB, {wall:.0f} s", file=sys.stderr)
            shutil.rmtree(work / f"pngs{n}")
            npz.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| source | images | peak RSS (MiB) | vs. the smallest | wall (s) |\n|---|---:|---:|---:|---:|")
    for source, n, rss, wall in rows:
        first = next(r for s, _, r, _ in rows if s == source)
        print(f"| {source} | {n:,} | {rss:,.0f} | {rss / first:.2f}x | {wall:.0f} |")


if __name__ == "__main__":
    main()
