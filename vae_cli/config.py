"""The one validated, frozen training Config and how presets and flags build it (>400 lines: every knob, once).

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
from typing import Any, Callable

from .backend import BACKENDS, PRECISIONS
from .data.spec import DATASET_HELP
from .errors import UsageError

ARCHS = ("mlp", "conv", "strided")
LIKELIHOODS = ("bernoulli", "gaussian", "gaussian-learned")
LR_SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("adam", "rmsprop")
ACTIVATIONS = ("relu", "silu")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
CHANNELS = (0, 1, 3)  # 0: as stored
MAX_IMAGE_SIDE = 4096
SWITCHES = ("auto", "on", "off")
PRIORS = ("standard", "mog", "vamp")
MAX_COMPONENTS = 1000  # mixture components of a prior or a gmm sampler

# Bumped when a run directory changes in a way older readers would misread.
# 2: the conv decoder's weights are stored under its fused layers (UpsampleConv2D, NarrowConv2D);
#    format-1 conv runs still load (run.load_run), but cannot be resumed.
FORMAT_VERSION = 2
FUSED_DECODER_FORMAT = 2

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_IMAGE_SIZE_RE = re.compile(r"^([0-9]{1,5})(?:x([0-9]{1,5}))?$")
# Generous ceilings: they exist to turn a typo like --epochs 1e12 into a clear error instead of
# an out-of-memory crash minutes later, not to limit real use.
MANY = 1_000_000


@dataclass(frozen=True)
class Bounds:
    """The accepted range of a numeric Config field, declared with the field."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    note: str = ""  # appended to the message, e.g. the unit

    def __contains__(self, value: float) -> bool:
        above = self.low < value if self.low_open else self.low <= value
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def expected(self, is_int: bool) -> str:
        if is_int:
            return f"an integer from {self.low} to {self.high}"
        if self.low_open and self.high_open:
            text = f"a number between {self.low:g} and {self.high:g} (exclusive)"
        else:
            low = f"{'>' if self.low_open else '>='} {self.low:g}"
            text = f"a number {low} and {'<' if self.high_open else '<='} {self.high:g}"
        return f"{text} ({self.note})" if self.note else text


def _knob(default: Any, help: str, *, bounds: Bounds | None = None, choices: tuple | None = None,
          check: Callable[[Any], None] | None = None) -> Any:
    """A Config field with everything its flag and its validation need: help, accepted values
    (bounds for numbers, choices for names) and an optional `check` raising ValueError."""
    return field(default=default, metadata={"help": help, "bounds": bounds, "choices": choices, "check": check})


def _check_name(value: str) -> None:
    if value and (not _NAME_RE.match(value) or ".." in value):
        raise ValueError("expected letters, digits, '.', '_' or '-' (no path separators, no '..', at most "
                         f"100 characters), got {value!r}")


def _not_empty(value: str) -> None:
    if not value:
        raise ValueError("must not be empty")


def _check_image_size(value: str) -> None:
    parse_image_size(value)


def _check_channels(value: int) -> None:
    if value not in CHANNELS:
        raise ValueError(f"expected 1 (grayscale) or 3 (RGB), got {value}")


def _check_filters(value: Any) -> None:
    if (not isinstance(value, (tuple, list)) or not value or len(value) > 6
            or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4096 for v in value)):
        raise ValueError(f"expected 1 to 6 integers from 1 to 4096, e.g. 32,32, got {value!r}")


def parse_components(text: str, kinds: tuple[str, ...], *, plain: tuple[str, ...] = (),
                     default_k: int | None = None) -> tuple[str, int]:
    """'mog:10' -> ('mog', 10) for a kind in `kinds` followed by ':K' (K from 1 to MAX_COMPONENTS);
    a name in `plain` -> (name, 0); a bare kind -> (kind, default_k) when default_k is given.
    ValueError naming every accepted form otherwise (used by --prior and --sampler)."""
    name, colon, count = text.partition(":")
    if not colon and name in plain:
        return name, 0
    if not colon and name in kinds and default_k is not None:
        return name, default_k
    if (colon and name in kinds and count.isascii() and count.isdigit() and not count.startswith("0")
            and int(count) <= MAX_COMPONENTS):
        return name, int(count)
    forms = [*plain, *(f"{kind}{'[:K]' if default_k is not None else ':K'}" for kind in kinds)]
    raise ValueError(f"expected {', '.join(forms[:-1])} or {forms[-1]} with K an integer from 1 to "
                     f"{MAX_COMPONENTS}, got {text!r}")


def parse_prior(text: str) -> tuple[str, int]:
    """--prior: 'standard' -> ('standard', 0), 'mog:K' / 'vamp:K' -> (kind, K)."""
    return parse_components(text, PRIORS[1:], plain=PRIORS[:1])


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


@dataclass(frozen=True)
class Config:
    """Everything that decides a training run. Field names are the flag names (`--latent-dim`)."""

    # data
    dataset: str = _knob("mnist", DATASET_HELP, check=_not_empty)
    validation_split: float = _knob(0.1,
        "fraction held out for validation when the dataset has no test split",
        bounds=Bounds(0.0, 1.0, low_open=True, high_open=True))
    image_size: str = _knob("",
        "resize every image to SIZE (square) or HxW, e.g. 64 or 64x48 (default: the stored size)",
        check=_check_image_size)
    channels: int = _knob(0,
        "1 (grayscale) or 3 (RGB); 0 keeps what is stored (a folder of only grayscale images gives 1, "
        "any other folder 3)", check=_check_channels)
    binarize: bool = _knob(False,
        "dynamic binarisation: in every training step each pixel becomes 1 with probability equal "
        "to its grey level (the literature's binarised MNIST); validation is binarised once, seeded")
    augment_shift: int = _knob(0,
        "train on copies shifted by up to this many pixels, a fresh random shift per image and "
        "step (validation and evaluation see the images unshifted; 0: off)", bounds=Bounds(0, 64))

    # model
    arch: str = _knob("conv",
        "encoder/decoder family: mlp, conv (Conv3x3+MaxPool stages, UpSampling+Conv3x3 decoder), "
        "strided (stride-2 Conv4x4 stages, stride-2 transposed-conv decoder)", choices=ARCHS)
    latent_dim: int = _knob(2, "size of z; 2 gives the classic scatter and manifold", bounds=Bounds(1, 4096))
    hidden_dim: int = _knob(512, "width of the dense hidden layers", bounds=Bounds(1, 65536))
    hidden_layers: int = _knob(1,
        "dense hidden layers in the encoder (after the conv stages) and in the decoder", bounds=Bounds(1, 16))
    activation: str = _knob("relu",
        "nonlinearity of every hidden layer: relu, or silu (x * sigmoid(x), also called swish)",
        choices=ACTIVATIONS)
    batch_norm: bool = _knob(False,
        "batch normalisation before the activation of each dense layer (Sonderby et al. 2016)")
    conv_filters: tuple[int, ...] = _knob((32, 32),
        "conv/strided arch: filters per stage, comma separated (the decoder mirrors them)", check=_check_filters)
    likelihood: str = _knob("bernoulli",
        "bernoulli: binary cross-entropy summed over pixels; gaussian: squared error summed "
        "(-log N(x; x_hat, 1/2)); gaussian-learned: the decoder also outputs each pixel's variance",
        choices=LIKELIHOODS)
    prior: str = _knob("standard",
        "p(z): standard (N(0, I)), mog:K (a learned mixture of K Gaussians) or vamp:K (the "
        "VampPrior, Tomczak and Welling 2018: the encoder's posteriors of K learned pseudo-inputs); "
        "the KL term of a learned prior is a one-sample estimate", check=parse_prior)
    conditional: bool = _knob(False,
        "conditional VAE: feed the one-hot class label to encoder and decoder, so samples can be "
        "drawn per class (needs a labelled dataset)")

    # loss: recon_weight * reconstruction + beta * KL (the classic tutorial used 10 and 1)
    beta: float = _knob(1.0, "weight of the KL term", bounds=Bounds(0.0, 1e6))
    recon_weight: float = _knob(1.0, "weight of the reconstruction term", bounds=Bounds(0.0, 1e6, low_open=True))
    kl_warmup_epochs: int = _knob(0,
        "raise the KL weight linearly from 0 to beta over this many epochs (0: off)", bounds=Bounds(0, MANY))
    free_bits: float = _knob(0.0,
        "nats per latent unit: a unit's batch-averaged KL below this is not penalised, against "
        "posterior collapse (0: off)", bounds=Bounds(0.0, 1000.0, note="nats per latent unit"))
    iw_train: int = _knob(1,
        "train on the importance-weighted bound (IWAE) with K samples per example (1: the ELBO)",
        bounds=Bounds(1, 10_000))

    # optimisation
    epochs: int = _knob(10, "passes over the training data", bounds=Bounds(1, MANY))
    batch_size: int = _knob(128, "examples per gradient step", bounds=Bounds(1, 1 << 20))
    learning_rate: float = _knob(1e-3, "optimizer step size", bounds=Bounds(0.0, 10.0, low_open=True))
    lr_schedule: str = _knob("constant",
        "constant, or cosine: decay the step size to 0 over the epochs", choices=LR_SCHEDULES)
    patience: int = _knob(0,
        "stop when the validation -ELBO has not improved for this many epochs and keep the best "
        "epoch's weights (0: train every epoch and keep the last)", bounds=Bounds(0, MANY))
    weight_decay: float = _knob(0.0,
        "decoupled weight decay (Loshchilov and Hutter 2019): each step also shrinks every weight "
        "by learning rate x this fraction, against overfitting small datasets (0: off)",
        bounds=Bounds(0.0, 1.0, high_open=True))
    optimizer: str = _knob("adam", "optimizer", choices=OPTIMIZERS)
    seed: int = _knob(0, "seeds the data split, weights and sampling", bounds=Bounds(0, 2**31 - 1))
    strategy: str = _knob("auto",
        "devices to train on: auto (mirrored when more than one GPU is visible), default (one "
        "device), mirrored (all local GPUs), multiworker (the cluster in TF_CONFIG; TensorFlow "
        "only); --batch-size is the global batch", choices=STRATEGIES)

    # engine: the same math on another Keras backend (vae_cli/backend.py)
    backend: str = _knob("auto",
        "Keras engine: tensorflow, jax, or auto (the one measured faster for the arch and device; "
        "the run directory records the engine used, and --resume keeps it)", choices=BACKENDS)
    precision: str = _knob("float32",
        "float32, or mixed: the network computes in float16 on a GPU (bfloat16 on a CPU) while "
        "the sampling, KL and loss stay float32", choices=PRECISIONS)

    # speed: how the machine runs the same math (vae_cli/speed.py picks the automatic values)
    steps_per_execution: int = _knob(0,
        "most batches per compiled training call (the largest divisor of an epoch's batches up to "
        "this); 0: automatic (32)", bounds=Bounds(0, 100_000))
    jit_compile: str = _knob("auto",
        "XLA-compile the training step; auto: on for GPUs and for the mlp arch, off for conv on CPU "
        "(XLA's CPU convolutions are slower)", choices=SWITCHES)

    # output
    out: str = _knob("outputs", "folder that receives the run directory", check=_not_empty)
    name: str = _knob("",
        "suffix of the run directory <out>/<YYYYmmdd-HHMMSS>-<name> (default: the arch)", check=_check_name)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_field(f, getattr(self, f.name), f.name)
        if self.free_bits > 0 and self.iw_train > 1:
            raise UsageError(
                f"--free-bits {self.free_bits:g} applies to the ELBO's KL term, which --iw-train "
                f"{self.iw_train} replaces; use one of them")
        prior = parse_prior(self.prior)[0]
        if prior != "standard" and self.free_bits > 0:
            raise UsageError(
                f"--free-bits {self.free_bits:g} floors each latent unit's closed-form KL, which --prior "
                f"{self.prior} does not have; use one of them")
        if prior != "standard" and self.iw_train > 1:
            raise UsageError(f"--iw-train {self.iw_train} trains on an importance-weighted bound whose log p(z) "
                             f"is N(0, I); --prior {self.prior} is not supported with it yet; use one of them")
        if prior == "vamp" and self.conditional:
            raise UsageError(f"--prior {self.prior} encodes pseudo-inputs that have no class label, so it "
                             "cannot train a --conditional model; use --prior mog:K or standard")
        if prior == "vamp" and self.batch_norm:
            raise UsageError(f"--prior {self.prior} runs the encoder on its pseudo-inputs, which --batch-norm "
                             "would normalise with their own batch statistics; use --prior mog:K or --no-batch-norm")

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
def _check_field(f: dataclasses.Field, value: Any, label: str) -> None:
    """Validate one value against its field's type and declared range; `label` says where it came
    from (flag or preset)."""
    kind, meta = type(f.default), f.metadata
    if kind is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{label}: expected true or false, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{label}: expected an integer, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UsageError(f"{label}: expected a finite number, got {value!r}")
    elif kind is str and not isinstance(value, str):
        raise UsageError(f"{label}: expected a string, got {value!r}")
    if meta["choices"] and value not in meta["choices"]:
        raise UsageError(f"{label}: expected {_one_of(meta['choices'])}, got {value!r}")
    if meta["bounds"] and value not in meta["bounds"]:
        raise UsageError(f"{label}: expected {meta['bounds'].expected(kind is int)}, got {value}")
    if meta["check"]:
        try:
            meta["check"](value)
        except ValueError as e:
            raise UsageError(f"{label}: {e}") from None


def _one_of(choices: tuple) -> str:
    return "one of " + ", ".join(map(str, choices))


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
        hint = (f"; did you mean --preset {path.stem} (the built-in preset)?"
                if path.suffix == ".json" and path.stem in preset_names() else "")
        raise UsageError(f"--preset: file {path} does not exist{hint}")
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
    if type(FIELDS[key].default) is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def config_from_dict(d: Any, *, where: str, missing: dict[str, Any] | None = None) -> Config:
    """Rebuild a Config saved in a run's config.json (same checks as a preset); `missing` gives
    the values of fields the file leaves out where they are not the defaults."""
    if not isinstance(d, dict):
        raise UsageError(f"{where}: expected a JSON object of settings, got {type(d).__name__}")
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise UsageError(
            f"{where}: unknown setting(s) {', '.join(map(repr, unknown))}; "
            "was it written by a newer vae-cli? Upgrade with pip install -U vae-cli")
    values = {**(missing or {}), **{k: _from_json(k, v) for k, v in d.items()}}
    for key, value in values.items():
        _check_field(FIELDS[key], value, f"{where}: {key}")
    return Config(**values)
