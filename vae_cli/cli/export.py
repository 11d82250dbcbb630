"""vae-export: a run's encoder and decoder as stand-alone files (Keras, SavedModel, LiteRT, ONNX)
that load without vae-cli, for a web page, a phone, a service or a notebook."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..export import FORMATS, MANIFEST_FILE, PARTS
from .common import Parser, quiet_tensorflow, run_main

EXAMPLES = f"""\
examples:
  vae-export outputs/20261123-101500-conv --format keras --out exported/conv-keras
  vae-export outputs/20261123-101500-conv --format tflite --part decoder --out phone/
  vae-export outputs/20261123-101500-conv --format savedmodel --out serving/conv
  vae-export outputs/20261123-101500-conv --format onnx --out web/   (needs pip install 'vae-cli[onnx]')

writes encoder.<ext> and decoder.<ext> (SavedModel: folders encoder/ and decoder/) and
{MANIFEST_FILE} into --out, which must be new or empty. The files hold stock layers only:
  keras       keras.models.load_model('decoder.keras')
  savedmodel  tf.saved_model.load('decoder').signatures['serving_default'](z=z)
  tflite      Interpreter(model_path='decoder.tflite').get_signature_runner()(z=z)
  onnx        onnxruntime.InferenceSession('decoder.onnx').run(None, {{'z': z}})
encoder: x (float32 images in [0, 1], channels last) -> z_mean, z_log_var; draw
z = z_mean + exp(z_log_var / 2) * eps yourself. decoder: z -> x_hat (and x_log_var for
gaussian-learned runs). Conditional runs take a second input, label: one-hot float32 (N, classes).
Each file is checked against the run's own models before --out appears.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vae-export", description="Export a trained run's encoder and decoder as "
                    "stand-alone model files.", epilog=EXAMPLES)
    parser.add_argument("run", metavar="RUN", help="a run directory written by vae-train")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="keras (.keras), savedmodel (TensorFlow), tflite (LiteRT) or onnx")
    parser.add_argument("--part", choices=PARTS, default="both", help="which model to export (default: both)")
    parser.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder for the files")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_main(parser.prog, lambda: export_command(args))


def export_command(args: argparse.Namespace) -> int:
    from ..export import check_format_available, check_out_folder, export_run
    from ..run import read_run_config

    run_path = Path(args.run).expanduser()
    read_run_config(run_path)
    check_format_available(args.format)
    out = check_out_folder(args.out)

    quiet_tensorflow()
    from ..run import load_run

    manifest = export_run(load_run(run_path), args.format, args.part, out)
    parts = [p for p in ("encoder", "decoder") if p in manifest]
    files = ", ".join(manifest[p]["file"] + ("/" if args.format == "savedmodel" else "") for p in parts)
    diffs = [manifest[p]["max_abs_difference"] for p in parts]
    checked = ("not run (onnxruntime is not installed)" if None in diffs
               else f"max |difference| from the run's models {max(diffs):.2g}")
    print(f"wrote {files} and {MANIFEST_FILE} to {out}/ (check: {checked})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
