"""vae-cli: train, inspect and sample Variational Autoencoders on Keras 3.

This module must stay free of heavy imports (keras, tensorflow, matplotlib) so that
`vae-train --help` and argument errors answer instantly.
"""

__version__ = "0.1.0"
