"""The per-epoch checkpoint (checkpoint.py): one file restores weights, optimizer state, the
sampler's RNG and the progress record exactly, and anything else is refused with one line."""

import numpy as np
import pytest

from vae_cli.checkpoint import Progress, load_checkpoint, read_progress, save_checkpoint, saved_progress
from vae_cli.config import Config
from vae_cli.errors import UsageError
from vae_cli.models import build_vae

SHAPE = (8, 8, 1)


def compiled_vae(config: Config):
    vae = build_vae(config, SHAPE).vae
    vae.compile(optimizer="adam")
    return vae


def trained_vae(config: Config):
    """A VAE after two steps: its optimizer slots and sampler RNG are no longer at their start."""
    vae = compiled_vae(config)
    x = np.random.default_rng(0).random((32, *SHAPE), dtype=np.float32)
    vae.fit(x, batch_size=16, epochs=1, verbose=0)
    return vae


def test_progress_records_epochs_and_follows_the_validation_elbo():
    progress = Progress()
    assert progress.record(1, {"loss": 5.0, "val_recon": 4.0, "val_kl": 1.0}, 2.0, 2.0)
    assert not progress.record(2, {"loss": 4.0, "val_recon": 4.5, "val_kl": 1.0}, 1.5, 3.5)
    assert progress.epochs_done == 2 and progress.best_val_loss == 5.0 and progress.epochs_since_best() == 1
    assert progress.history_columns() == {"loss": [5.0, 4.0], "val_recon": [4.0, 4.5], "val_kl": [1.0, 1.0]}
    assert progress.history_csv() == "epoch,loss,val_recon,val_kl\n1,5.0,4.0,1.0\n2,4.0,4.5,1.0\n"


def test_a_checkpoint_restores_weights_optimizer_rng_and_progress_exactly(tmp_path):
    config = Config(arch="mlp", hidden_dim=8)
    vae = trained_vae(config)
    progress = Progress()
    progress.record(1, {"loss": 3.0, "val_loss": 2.5}, 0.5, 0.5)
    path = tmp_path / "checkpoint.weights.h5"
    save_checkpoint(path, vae, progress)

    restored = compiled_vae(config)
    assert load_checkpoint(path, restored) == progress == read_progress(path)[0]
    for saved, loaded in [(vae.weights, restored.weights), (vae.optimizer.variables, restored.optimizer.variables)]:
        assert len(saved) == len(loaded)
        for a, b in zip(saved, loaded):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    rng = [v for v in vae.variables if v.path.endswith("seed_generator_state")]
    assert rng and all(np.array_equal(np.asarray(v), np.asarray(w)) for v, w in
                       zip(rng, [v for v in restored.variables if v.path.endswith("seed_generator_state")]))


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "checkpoint.weights.h5"
    save_checkpoint(path, trained_vae(Config(arch="mlp", hidden_dim=8)), Progress())
    with pytest.raises(UsageError, match="does not match config.json"):
        load_checkpoint(path, compiled_vae(Config(arch="mlp", hidden_dim=16)))


def test_final_weights_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "vae.weights.h5"
    compiled_vae(Config(arch="mlp", hidden_dim=8)).save_weights(path)
    with pytest.raises(UsageError, match="not a vae-cli checkpoint"):
        read_progress(path)
    assert saved_progress(path) == Progress()  # what a resume starts from: epoch 1
    assert saved_progress(tmp_path / "absent.weights.h5") == Progress()
