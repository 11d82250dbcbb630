"""Config precedence (defaults < preset < flags), validation, and preset files."""

import json
import subprocess
import sys

import pytest

from vae_cli.config import Config, config_from_dict, preset_names, resolve
from vae_cli.errors import UsageError


def write(tmp_path, text, name="p.json"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_precedence_defaults_then_preset_then_flags(tmp_path):
    preset = write(tmp_path, json.dumps({"latent_dim": 8, "epochs": 3, "arch": "mlp"}))
    config = resolve(preset, {"epochs": 5})
    assert config.latent_dim == 8  # from the preset
    assert config.epochs == 5  # flag beats preset
    assert config.arch == "mlp"
    assert config.batch_size == Config().batch_size  # untouched default


def test_config_is_frozen():
    with pytest.raises(Exception):
        Config().latent_dim = 3


@pytest.mark.parametrize("name", ["mlp", "conv", "fashion", "latent16"])
def test_named_presets_resolve(name):
    assert name in preset_names()
    config = resolve(name)
    assert isinstance(config, Config)


def test_required_presets_say_what_the_issue_says():
    assert resolve("mlp").arch == "mlp" and resolve("mlp").hidden_dim == 512
    conv = resolve("conv")
    assert (conv.arch, conv.conv_filters, conv.hidden_dim, conv.latent_dim) == ("conv", (32, 32), 512, 2)
    assert resolve("fashion").dataset == "fashion_mnist"
    assert resolve("latent16").latent_dim == 16


def test_int_promotes_to_float_but_not_the_reverse(tmp_path):
    assert resolve(write(tmp_path, '{"beta": 2}')).beta == 2.0
    with pytest.raises(UsageError, match="latent_dim: expected an integer"):
        resolve(write(tmp_path, '{"latent_dim": 2.5}'))


@pytest.mark.parametrize("text, match", [
    ('{"latent_dim": 2,', r"invalid JSON at line 1, column \d+"),
    ('{\n  "beta": 1,\n  "epochs": }', "line 3, column 13"),
    ('[1, 2]', "expected a JSON object"),
    ('{"latent_dims": 2}', "unknown key.*'latent_dims'"),
    ('{"beta": NaN}', "NaN is not allowed"),
    ('{"epochs": "ten"}', "epochs: expected an integer, got 'ten'"),
    ('{"arch": "vgg"}', "arch: expected one of mlp, conv"),
    ('{"likelihood": "poisson"}', "likelihood: expected one of bernoulli, gaussian"),
    ('{"optimizer": "sgd"}', "optimizer: expected one of adam, rmsprop"),
    ('{"epochs": 1e400}', "epochs: expected an integer"),
    ('{"batch_size": 99999999999999}', "batch_size: expected an integer from 1 to"),
    ('{"name": "../../etc"}', "name: expected letters"),
    ('{"conv_filters": []}', "conv_filters: expected 1 to 6 integers"),
])
def test_bad_presets_name_the_problem(tmp_path, text, match):
    with pytest.raises(UsageError, match=match):
        resolve(write(tmp_path, text))


@pytest.mark.parametrize("overrides, match", [
    ({"latent_dim": 0}, "--latent-dim: expected an integer from 1"),
    ({"epochs": 0}, "--epochs: expected an integer from 1"),
    ({"batch_size": -4}, "--batch-size: expected an integer from 1"),
    ({"beta": -1.0}, "--beta: expected a number >= 0"),
    ({"learning_rate": 0.0}, "--learning-rate: expected a number > 0"),
    ({"validation_split": 1.0}, "--validation-split: expected a number between 0 and 1"),
    ({"recon_weight": float("nan")}, "--recon-weight: expected a finite number"),
    ({"name": "a/b"}, "--name: expected letters"),
])
def test_bad_flag_values_name_the_flag(overrides, match):
    with pytest.raises(UsageError, match=match):
        resolve(None, overrides)


def test_missing_and_unknown_presets():
    with pytest.raises(UsageError, match="no preset named 'nope'.*conv"):
        resolve("nope")
    with pytest.raises(UsageError, match="does not exist"):
        resolve("no/such/file.json")


def test_config_round_trips_through_its_dict():
    config = resolve("conv", {"latent_dim": 5, "beta": 0.5})
    again = config_from_dict(json.loads(json.dumps(config.to_dict())), where="config.json")
    assert again == config


def test_importing_the_cli_does_not_import_tensorflow():
    code = "import sys, vae_cli.cli.train; vae_cli.cli.train.build_parser(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
