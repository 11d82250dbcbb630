"""train_run: the one library call that turns a Config into a run directory (vae-train and the
quality benchmark use it): the data as the config describes it, extra callbacks on every
epoch, the lines vae-train prints, and a resume of the same run."""

import json

import keras
import pytest

from vae_cli.config import resolve
from vae_cli.errors import UsageError
from vae_cli.run import load_run
from vae_cli.train_run import resume_run, train_new_run


class Epochs(keras.callbacks.Callback):
    """Records the 0-based epochs it saw end."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(epoch)


def test_a_config_becomes_a_run_at_its_image_size_and_resumes(tiny_npz, tmp_path):
    config = resolve(None, {"arch": "mlp", "hidden_dim": 8, "dataset": f"npz:{tiny_npz}", "epochs": 2,
                            "batch_size": 16, "image_size": "12x10", "channels": 3, "out": str(tmp_path / "runs")})
    lines, epochs = [], Epochs()
    result = train_new_run(config, log=lines.append, callbacks=[epochs])
    (run,) = (tmp_path / "runs").iterdir()
    assert result.run_path == run and epochs.seen == [0, 1]
    assert load_run(run).input_shape == (12, 10, 3)  # 28x28 grey, resized and made RGB as configured
    assert result.metrics == json.loads((run / "metrics.json").read_text())
    assert result.metrics["status"] == "completed" and len(result.history["loss"]) == 2
    assert f"run directory: {run}" in lines and any(line.startswith("data: npz:") for line in lines)
    assert any(line.startswith("strategy: default") for line in lines)

    epochs = Epochs()
    result = resume_run(str(run), flags={"epochs": 3}, log=lines.append, callbacks=[epochs])
    assert epochs.seen == [2] and result.run_path == run
    assert "resuming at epoch 3 of 3" in lines
    assert result.metrics["epochs"] == 3 and result.metrics["resumed_at_epochs"] == [2]
    with pytest.raises(UsageError, match="--latent-dim 5 .*a resumed run keeps the settings it started with"):
        resume_run(str(run), flags={"epochs": 4, "latent_dim": 5})

