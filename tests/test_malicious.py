"""Nothing executes from data: malicious files are refused, and the payload inside each one
(it would create a marker file) never runs; a symlink leading out of a run directory is
refused before anything is read or written through it."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from tests.faults import snapshot
from vae_cli.cli.train import main as train_main
from vae_cli.data import load_dataset
from vae_cli.errors import UsageError
from vae_cli.resume import plan_resume
from vae_cli.run import read_run_config


@pytest.fixture
def marker(tmp_path, monkeypatch):
    """A payload that runs creates this file; os.system is disarmed in case one gets further."""
    calls = []
    monkeypatch.setattr(os, "system", lambda cmd: calls.append(cmd) or 0)
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a payload ran"
    assert not calls, f"os.system was called with {calls}"


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def test_keras_file_with_a_lambda_layer_is_refused(tmp_path, marker):
    inputs = keras.Input((2,))
    payload = eval(f"lambda x: (open({str(marker)!r}, 'w').write('code ran'), x)[1]")  # no closure
    outputs = keras.layers.Lambda(payload)(inputs)
    path = tmp_path / "decoder.keras"
    keras.Model(inputs, outputs).save(path)
    marker.unlink(missing_ok=True)  # tracing the lambda while saving ran it once, here
    with pytest.raises(ValueError, match="Lambda"):
        keras.models.load_model(path, safe_mode=True)


def test_npz_with_pickled_objects_is_refused(tmp_path, marker):
    x = np.empty(3, dtype=object)
    x[:] = [Payload(marker)] * 3
    np.savez(tmp_path / "evil.npz", x_train=x, x_test=x)
    with pytest.raises(UsageError, match="pickled/object data, which is not loaded for safety"):
        load_dataset(f"npz:{tmp_path / 'evil.npz'}")


def test_pickled_npy_renamed_to_npz_is_refused(tmp_path, marker):
    x = np.empty(1, dtype=object)
    x[0] = Payload(marker)
    np.save(tmp_path / "evil.npy", x, allow_pickle=True)
    os.rename(tmp_path / "evil.npy", tmp_path / "evil.npz")
    with pytest.raises(UsageError, match="not a readable .npz archive|single .npy array"):
        load_dataset(f"npz:{tmp_path / 'evil.npz'}")


@pytest.mark.parametrize("preset", [
    {"optimizer": "os.system"},
    {"arch": "__import__('os').system('touch PWNED')"},
    {"likelihood": {"__class__": "subprocess.Popen", "args": ["touch", "PWNED"]}},
    {"dataset": "npz:$(touch PWNED)"},
    {"name": "`touch PWNED`"},
])
def test_preset_naming_code_is_data(tmp_path, marker, monkeypatch, capsys, preset):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "preset.json"
    path.write_text(json.dumps(preset))
    assert train_main(["--preset", str(path), "--out", str(tmp_path / "runs")]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists()


def test_config_json_naming_code_is_refused(tmp_path, marker):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(
        {"format_version": 1, "config": {"optimizer": "os.system"}, "input_shape": [8, 8, 1]}))
    with pytest.raises(UsageError, match="optimizer: expected one of adam, rmsprop"):
        read_run_config(run)


def test_symlinks_out_of_a_run_are_refused_before_any_read_or_write(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(
        {"format_version": 1, "config": {"arch": "mlp"}, "input_shape": [8, 8, 1]}))
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "epoch-001.png").write_bytes(b"not yours")
    (run / "samples").symlink_to(outside)  # training would write sample grids into it
    before = snapshot(outside)
    with pytest.raises(UsageError, match="samples is a symlink to .*precious, outside the run directory"):
        plan_resume(str(run), None, {})
    (run / "samples").unlink()
    (run / "samples").symlink_to(run)  # a link that stays inside is fine
    assert read_run_config(run)[0].arch == "mlp"
    assert snapshot(outside) == before


def test_checkpoint_progress_record_is_parsed_as_data_only(tmp_path, marker):
    import h5py

    from vae_cli.checkpoint import PROGRESS_ATTR, read_progress

    path = tmp_path / "checkpoint.weights.h5"
    with h5py.File(path, "w") as f:
        f.attrs[PROGRESS_ATTR] = json.dumps({"version": 1, "epochs_done": "__import__('os')",
                                             "rng": []})
    with pytest.raises(UsageError, match="the checkpoint is damaged"):
        read_progress(path)
