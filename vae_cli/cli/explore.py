"""vae-explore: walk through a run's latent space in the browser (a page served on 127.0.0.1)."""

from __future__ import annotations

import argparse
import sys

from ..signals import queued_stops
from .common import Parser, int_in, quiet_tensorflow, run_main

DEFAULT_RUN = "pretrained:mnist"

EXAMPLES = """\
examples:
  vae-explore                                   the small pretrained MNIST run shipped with vae-cli
  vae-explore outputs/20261123-101500-conv      opens http://127.0.0.1:8765/
  vae-explore outputs/20261123-101500-conv --port 0 --no-browser

The page shows the held-out images' codes (z_mean) as a scatter coloured by label (their PCA
view when latent_dim > 2); click it to decode that point, move the sliders (the most active
units first) to change it, set A and B for an interpolation strip, and copy the z for
`vae-sample RUN --z ...`. Everything is served by vae-explore itself: no internet needed.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vae-explore", description="Walk through a trained run's latent space in the browser.",
                    epilog=EXAMPLES)
    parser.add_argument("run", metavar="RUN", nargs="?", default=DEFAULT_RUN,
                        help=f"a run directory written by vae-train, or {DEFAULT_RUN} (default)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default: 127.0.0.1, this machine only; any other "
                             "address lets others on the network use the page)")
    parser.add_argument("--port", type=int_in(0, 65535), default=8765,
                        help="port to serve on; 0 picks a free one (default: 8765)")
    parser.add_argument("--no-browser", action="store_true", help="print the URL without opening a browser")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Ctrl-C and SIGTERM stop the server (socket closed, one line, exit 0); set up before
    # TensorFlow starts its threads, which inherit the signal mask
    with queued_stops():
        quiet_tensorflow()
        from ..explore.server import explore

        return run_main(parser.prog, lambda: explore(args.run, host=args.host, port=args.port,
                                                     open_browser=not args.no_browser))


if __name__ == "__main__":
    sys.exit(main())
