"""Views of a dataset (binarised validation, conditional labels): everything training asks of a
dataset answers as the wrapped dataset does, except what the view changes."""

import json

from vae_cli.cli.train import main

def _recorded_speed(out, tiny_npz, *flags):
    assert main(["--arch", "mlp", "--hidden-dim", "8", "--latent-dim", "2", "--epochs", "1",
                 "--batch-size", "12", "--dataset", f"npz:{tiny_npz}", "--out", str(out), *flags]) == 0
    (run,) = out.iterdir()
    return json.loads((run / "metrics.json").read_text())["speed"]

def test_a_binarised_run_ends_each_compiled_call_at_an_epoch_end_like_a_grey_run(tmp_path, tiny_npz):
    """64 images in batches of 12 are 6 batches an epoch: a compiled call of more than 6 (or of
    4 or 5) steps would train on the next epoch's batches, and resume would no longer be exact."""
    grey = _recorded_speed(tmp_path / "grey", tiny_npz)
    binarised = _recorded_speed(tmp_path / "binarised", tiny_npz, "--binarize")
    assert 6 % binarised["steps_per_execution"] == 0
    assert binarised == grey
