"""The one validated, frozen training configuration, and how presets and flags build it.

Precedence is built-in defaults < preset < flags. Presets are JSON data (parsed, never executed)
and list only the fields they change. This module imports nothing heavy: `vae-train --help` and
every argument error are answered before TensorFlow loads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

ARCHS = ("mlp", "conv", "strided")
LIKELIHOODS = ("bernoulli", "gaussian", "gaussian-learned")
LR_SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("adam", "rmsprop")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
CHANNELS = (0, 1, 3)  # 0: as stored
MAX_IMAGE_SIDE = 4096
SWITCHES = ("auto", "on", "off")

# Bumped when a run directory changes in a way older readers would misread.
# 2: the conv decoder's weights are stored under its fused layers (UpsampleConv2D, NarrowConv2D);
#    format-1 conv runs still load (run.load_run), but cannot be resumed.
FORMAT_VERSION = 2
FUSED_DECODER_FORMAT = 2

# Generous ceilings: they exist to turn a typo like --epochs 1e12 into a clear error instead of
# an out-of-memory crash minutes later, not to limit real use.
_MAX_INT = {
    "latent_dim": 4096,
    "hidden_dim": 65536,
    "hidden_layers": 16,
    "epochs": 1_000_000,
    "batch_size": 1 << 20,
    "kl_warmup_epochs": 1_000_000,
    "iw_train": 10_000,
    "augment_shift": 64,
    "patience": 1_000_000,
    "seed": 2**31 - 1,
    "steps_per_execution": 100_000,
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass(frozen=True)
class Config:
    """Everything that decides a training run. Field names are the flag names (`--latent-dim`)."""

    # data
    dataset: str = field(default="mnist", metadata=_help(
        "mnist, mnist-5k, fashion_mnist, cifar10, npz:PATH, idx:DIR or folder:DIR (image files)"))
    validation_split: float = field(default=0.1, metadata=_help(
        "fraction held out for validation when the dataset has no test split"))
    image_size: str = field(default="", metadata=_help(
        "resize every image to SIZE (square) or HxW, e.g. 64 or 64x48 (default: the stored size)"))
    channels: int = field(default=0, metadata=_help(
        "1 (grayscale) or 3 (RGB); 0 keeps what is stored (a folder of only grayscale images gives 1, "
        "any other folder 3)"))
    binarize: bool = field(default=False, metadata=_help(
        "dynamic binarisation: in every training step each pixel becomes 1 with probability equal "
        "to its grey level (the literature's binarised MNIST); validation is binarised once, seeded"))
    augment_shift: int = field(default=0, metadata=_help(
        "train on copies shifted by up to this many pixels, a fresh random shift per image and "
        "step (validation and evaluation see the images unshifted; 0: off)"))

    # model
    arch: str = field(default="conv", metadata=_help(
        "encoder/decoder family: mlp, conv (Conv3x3+MaxPool stages, UpSampling+Conv3x3 decoder), "
        "strided (stride-2 Conv4x4 stages, stride-2 transposed-conv decoder)", choices=ARCHS))
    latent_dim: int = field(default=2, metadata=_help("size of z; 2 gives the classic scatter and manifold"))
    hidden_dim: int = field(default=512, metadata=_help("width of the dense hidden layers"))
    hidden_layers: int = field(default=1, metadata=_help(
        "dense hidden layers in the encoder (after the conv stages) and in the decoder"))
    batch_norm: bool = field(default=False, metadata=_help(
        "batch normalisation before the ReLU of each dense layer (Sonderby et al. 2016)"))
    conv_filters: tuple[int, ...] = field(default=(32, 32), metadata=_help(
        "conv/strided arch: filters per stage, comma separated (the decoder mirrors them)"))
    likelihood: str = field(default="bernoulli", metadata=_help(
        "bernoulli: binary cross-entropy summed over pixels; gaussian: squared error summed "
        "(-log N(x; x_hat, 1/2)); gaussian-learned: the decoder also outputs each pixel's variance",
        choices=LIKELIHOODS))
    conditional: bool = field(default=False, metadata=_help(
        "conditional VAE: feed the one-hot class label to encoder and decoder, so samples can be "
        "drawn per class (needs a labelled dataset)"))

    # loss: recon_weight * reconstruction + beta * KL (the classic tutorial used 10 and 1)
    beta: float = field(default=1.0, metadata=_help("weight of the KL term"))
    recon_weight: float = field(default=1.0, metadata=_help("weight of the reconstruction term"))
    kl_warmup_epochs: int = field(default=0, metadata=_help(
        "raise the KL weight linearly from 0 to beta over this many epochs (0: off)"))
    free_bits: float = field(default=0.0, metadata=_help(
        "nats per latent unit: a unit's batch-averaged KL below this is not penalised, against "
        "posterior collapse (0: off)"))
    iw_train: int = field(default=1, metadata=_help(
        "train on the importance-weighted bound (IWAE) with K samples per example (1: the ELBO)"))

    # optimisation
    epochs: int = field(default=10, metadata=_help("passes over the training data"))
    batch_size: int = field(default=128, metadata=_help("examples per gradient step"))
    learning_rate: float = field(default=1e-3, metadata=_help("optimizer step size"))
    lr_schedule: str = field(default="constant", metadata=_help(
        "constant, or cosine: decay the step size to 0 over the epochs", choices=LR_SCHEDULES))
    patience: int = field(default=0, metadata=_help(
        "stop when the validation -ELBO has not improved for this many epochs and keep the best "
        "epoch's weights (0: train every epoch and keep the last)"))
    optimizer: str = field(default="adam", metadata=_help("optimizer", choices=OPTIMIZERS))
    seed: int = field(default=0, metadata=_help("seeds the data split, weights and sampling"))
    strategy: str = field(default="auto", metadata=_help(
        "tf.distribute strategy: auto (mirrored when more than one GPU is visible), default (one "
        "device), mirrored (all local GPUs), multiworker (the cluster in TF_CONFIG); "
        "--batch-size is the global batch", choices=STRATEGIES))

    # speed: how the machine runs the same math (vae_cli/speed.py picks the automatic values)
    steps_per_execution: int = field(default=0, metadata=_help(
        "most batches per compiled training call (the largest divisor of an epoch's batches up to "
        "this); 0: automatic (32)"))
    jit_compile: str = field(default="auto", metadata=_help(
        "XLA-compile the training step; auto: on for GPUs and for the mlp arch, off for conv on CPU "
        "(XLA's CPU convolutions are slower)", choices=SWITCHES))

    # output
    out: str = field(default="outputs", metadata=_help("folder that receives the run directory"))
    name: str = field(default="", metadata=_help(
        "suffix of the run directory <out>/<YYYYmmdd-HHMMSS>-<name> (default: the arch)"))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_field(f, getattr(self, f.name), f.name)
        if self.free_bits > 0 and self.iw_train > 1:
            raise UsageError(
                f"--free-bits {self.free_bits:g} applies to the ELBO's KL term, which --iw-train "
                f"{self.iw_train} replaces; use one of them")

    @property
    def run_name(self) -> str:
        return self.name or self.arch

    @property
    def image_hw(self) -> tuple[int, int] | None:
        """--image-size as (height, width), or None to keep the stored size."""
        return parse_image_size(self.image_size)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["conv_filters"] = list(self.conv_filters)
        return d


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_IMAGE_SIZE_RE = re.compile(r"^([0-9]{1,5})(?:x([0-9]{1,5}))?$")


def parse_image_size(text: str) -> tuple[int, int] | None:
    """'' -> None, '64' -> (64, 64), '64x48' -> (64, 48) as (height, width); ValueError otherwise."""
    if text == "":
        return None
    match = _IMAGE_SIZE_RE.match(text.strip().lower())
    if not match:
        raise ValueError(f"expected SIZE or HxW such as 64 or 64x48, got {text!r}")
    h, w = int(match[1]), int(match[2] or match[1])
    if not (1 <= h <= MAX_IMAGE_SIDE and 1 <= w <= MAX_IMAGE_SIDE):
        raise ValueError(f"expected sides from 1 to {MAX_IMAGE_SIDE} pixels, got {text!r}")
    return h, w


def _check_field(f: dataclasses.Field, value: Any, label: str) -> None:
    """Validate one value against its field; `label` says where it came from (flag or preset)."""
    name = f.name
    if f.type in ("bool", bool):
        if not isinstance(value, bool):
            raise UsageError(f"{label}: expected true or false, got {value!r}")
    elif f.type in ("int", int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{label}: expected an integer, got {value!r}")
        if name == "channels":
            if value not in CHANNELS:
                raise UsageError(f"{label}: expected 1 (grayscale) or 3 (RGB), got {value}")
            return
        low = 0 if name in ("kl_warmup_epochs", "seed", "steps_per_execution", "patience", "augment_shift") else 1
        high = _MAX_INT[name]
        if not low <= value <= high:
            raise UsageError(f"{label}: expected an integer from {low} to {high}, got {value}")
    elif f.type in ("float", float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UsageError(f"{label}: expected a finite number, got {value!r}")
        _check_float_range(name, float(value), label)
    elif f.type in ("str", str):
        if not isinstance(value, str):
            raise UsageError(f"{label}: expected a string, got {value!r}")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise UsageError(f"{label}: expected one of {', '.join(choices)}, got {value!r}")
        if name == "name" and value and (not _NAME_RE.match(value) or ".." in value):
            raise UsageError(
                f"{label}: expected letters, digits, '.', '_' or '-' (no path separators, "
                f"no '..', at most 100 characters), got {value!r}")
        if name in ("dataset", "out") and not value:
            raise UsageError(f"{label}: must not be empty")
        if name == "image_size":
            try:
                parse_image_size(value)
            except ValueError as e:
                raise UsageError(f"{label}: {e}") from None
    else:  # conv_filters
        if (not isinstance(value, (tuple, list)) or not value or len(value) > 6
                or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4096 for v in value)):
            raise UsageError(
                f"{label}: expected 1 to 6 integers from 1 to 4096, e.g. 32,32, got {value!r}")


def _check_float_range(name: str, value: float, label: str) -> None:
    if name == "validation_split" and not 0.0 < value < 1.0:
        raise UsageError(f"{label}: expected a number between 0 and 1 (exclusive), got {value}")
    if name == "learning_rate" and not 0.0 < value <= 10.0:
        raise UsageError(f"{label}: expected a number > 0 and <= 10, got {value}")
    if name == "beta" and not 0.0 <= value <= 1e6:
        raise UsageError(f"{label}: expected a number >= 0 (and <= 1e6), got {value}")
    if name == "free_bits" and not 0.0 <= value <= 1000.0:
        raise UsageError(f"{label}: expected a number from 0 to 1000 (nats per latent unit), got {value}")
    if name == "recon_weight" and not 0.0 < value <= 1e6:
        raise UsageError(f"{label}: expected a number > 0 (and <= 1e6), got {value}")


# --------------------------------------------------------------------------------------------
# presets


def preset_dirs() -> list[Path]:
    """Where named presets live: inside the installed package (wheel), else the source checkout."""
    here = Path(__file__).resolve().parent
    return [d for d in (here / "configs", here.parent / "configs") if d.is_dir()]


def preset_names() -> list[str]:
    return sorted({p.stem for d in preset_dirs() for p in d.glob("*.json")})


def find_preset(name_or_path: str) -> Path:
    """A preset is a name from configs/ (`conv`) or a path to a JSON file."""
    looks_like_path = "/" in name_or_path or name_or_path.endswith(".json")
    if not looks_like_path:
        for d in preset_dirs():
            candidate = d / f"{name_or_path}.json"
            if candidate.is_file():
                return candidate
        raise UsageError(
            f"--preset: no preset named {name_or_path!r}; choose one of "
            f"{', '.join(preset_names()) or '(none installed)'} or give a path to a .json file")
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise UsageError(f"--preset: file {path} does not exist")
    if not path.is_file():
        raise UsageError(f"--preset: {path} is not a file")
    return path


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not allowed in a preset (JSON has no NaN or Infinity)")


def read_preset(path: Path) -> dict[str, Any]:
    """Parse a preset as data: an object whose keys are Config fields."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"preset {path}: cannot read it ({e.__class__.__name__}: {e})") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise UsageError(
            f"preset {path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except (ValueError, RecursionError) as e:
        raise UsageError(f"preset {path}: {e}") from None
    if not isinstance(data, dict):
        raise UsageError(
            f"preset {path}: expected a JSON object of settings like {{\"latent_dim\": 2}}, "
            f"got a {type(data).__name__}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise UsageError(
            f"preset {path}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(FIELDS)}")
    return data


# --------------------------------------------------------------------------------------------
# resolution


def resolve(preset: str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults < preset < overrides (flags), validated once into a frozen Config."""
    values: dict[str, Any] = {}
    if preset is not None:
        path = find_preset(preset)
        for key, value in read_preset(path).items():
            _check_field(FIELDS[key], _from_json(key, value), f"preset {path}: {key}")
            values[key] = _from_json(key, value)
    for key, value in (overrides or {}).items():
        if key not in FIELDS:
            raise UsageError(f"unknown setting {key!r}")
        _check_field(FIELDS[key], value, "--" + key.replace("_", "-"))
        values[key] = value
    return Config(**values)


def _from_json(key: str, value: Any) -> Any:
    if key == "conv_filters" and isinstance(value, list):
        return tuple(value)
    if FIELDS[key].type in ("float", float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def config_from_dict(d: Any, *, where: str) -> Config:
    """Rebuild a Config saved in a run's config.json (same checks as a preset)."""
    if not isinstance(d, dict):
        raise UsageError(f"{where}: expected a JSON object of settings, got {type(d).__name__}")
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise UsageError(
            f"{where}: unknown setting(s) {', '.join(map(repr, unknown))}; "
            "was it written by a newer vae-cli? Upgrade with pip install -U vae-cli")
    values = {k: _from_json(k, v) for k, v in d.items()}
    for key, value in values.items():
        _check_field(FIELDS[key], value, f"{where}: {key}")
    return Config(**values)
