"""The trainer: a seeded run repeats exactly on CPU."""

import numpy as np

from vae_cli.cli.train import main
from vae_cli.run import load_run


def _train(out, tiny_npz, seed):
    assert main(["--arch", "mlp", "--hidden-dim", "32", "--dataset", f"npz:{tiny_npz}", "--epochs", "2",
                 "--batch-size", "16", "--seed", str(seed), "--out", str(out)]) == 0
    (run,) = out.iterdir()
    return load_run(run)


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, tiny_npz):
    a = _train(tmp_path / "a", tiny_npz, seed=5)
    b = _train(tmp_path / "b", tiny_npz, seed=5)
    c = _train(tmp_path / "c", tiny_npz, seed=6)
    for wa, wb in zip(a.vae.get_weights(), b.vae.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.vae.get_weights(), c.vae.get_weights()))
