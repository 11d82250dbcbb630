"""Fuzzing: random preset files and random flag values never end in a traceback.

Every generated input either is refused with one stderr line and exit code 2, or is valid and
reaches the point where training would load data (patched to stop there, so no example trains).
Examples are derandomized so CI runs the same cases every time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import vae_cli.train_run
import vae_cli.trainer  # noqa: F401  (imports keras now, not inside an example)
from vae_cli.cli.train import build_parser, main as train_main
from vae_cli.config import FIELDS, Config
from vae_cli.errors import UsageError
from vae_cli.checkpoint import _check_progress
from vae_cli.run import read_run_config

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
COUNTS: dict[str, dict[str, int]] = {}


def count(outcome: str) -> None:
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0]
    COUNTS.setdefault(test, {"refused": 0, "accepted": 0})[outcome] += 1


class ReachedTraining(Exception):
    """Raised instead of loading data: the input was accepted."""


def run_vae_train(argv: list[str]) -> None:
    """Run vae-train in-process; fail the test on anything but exit 2 + one line, or acceptance."""
    err = io.StringIO()

    def stop(*args, **kwargs):
        raise ReachedTraining

    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        mp.setattr(vae_cli.train_run, "load_dataset", stop)  # the name train_new_run calls
        try:
            code = train_main(argv)
        except ReachedTraining:
            count("accepted")
            return
        except SystemExit as e:
            code = e.code
    lines = err.getvalue().strip().splitlines()
    assert code == 2, (argv, err.getvalue())
    assert len(lines) == 1 and lines[0].startswith("vae-train: error: "), (argv, err.getvalue())
    count("refused")


json_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
# values close to what each field accepts, so the fuzzer gets past the type checks too
plausible = st.one_of(st.integers(-3, 5000), st.floats(-1.0, 2.0), st.sampled_from(
    ["mlp", "conv", "adam", "rmsprop", "bernoulli", "gaussian", "mnist-5k", "npz:", "idx:/",
     "run-1", "../x", "a/b", ".", "", "x" * 101]), st.lists(st.integers(-1, 5000), max_size=8))
preset_dicts = st.dictionaries(st.sampled_from(sorted(FIELDS)) | st.text(max_size=10),
                               plausible | json_values, max_size=6)


DEFAULTS = Config().to_dict()
valid_presets = st.sets(st.sampled_from(sorted(k for k in DEFAULTS if k != "out"))).map(
    lambda keys: {k: DEFAULTS[k] for k in keys})


@SETTINGS
@given(content=valid_presets.map(json.dumps) | preset_dicts.map(json.dumps) | json_values.map(json.dumps) | st.text(max_size=200)
       | st.binary(max_size=200))
def test_random_presets_never_raise(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "preset.json"
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        run_vae_train(["--preset", str(path), "--out", str(Path(tmp) / "runs")])
        assert not (Path(tmp) / "runs").exists() or not any((Path(tmp) / "runs").iterdir())


FLAGS = sorted({opt for action in build_parser()._actions for opt in action.option_strings
                if opt not in ("-h", "--help", "--out")})
flag_values = st.one_of(
    st.text(max_size=20), st.integers().map(str), st.floats().map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "-0", "0", "1", "2", "../..", "", "32,", ",", "1e-400",
                     "0x10", "mlp", "conv", "mnist-5k", "npz:nope.npz", "idx:.", "--epochs", "1_000"]))


def _valid_tokens() -> dict[str, tuple[str, ...]]:
    """Each Config flag with its default value as text: random pairs mixed with these also
    reach the later checks (and acceptance), not only argparse's."""
    tokens = {}
    for name, value in dataclasses.asdict(Config()).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            tokens[flag] = (flag,)
        elif value not in ("", None):
            tokens[flag] = (flag, ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value))
    return {k: v for k, v in tokens.items() if k != "--out"}


VALID_TOKENS = _valid_tokens()
flag_pairs = st.tuples(st.sampled_from(FLAGS), flag_values) | st.sampled_from(sorted(VALID_TOKENS.values()))


@SETTINGS
@given(pairs=st.lists(flag_pairs, min_size=1, max_size=4))
def test_random_flag_values_never_raise(pairs):
    with tempfile.TemporaryDirectory() as tmp:
        argv = [token for pair in pairs for token in pair]
        run_vae_train([*argv, "--out", str(Path(tmp) / "runs")])


progress_fields = st.fixed_dictionaries({}, optional={
    "version": st.just(1) | json_values, "epochs_done": st.integers(-1, 3) | json_values,
    "history": st.lists(st.dictionaries(st.sampled_from(["epoch", "loss", "val_loss"]),
                                        st.integers(0, 3) | st.floats() | json_values), max_size=3),
    "best_val_loss": st.none() | st.floats() | json_values, "epoch_seconds": st.lists(st.floats()),
    "fit_seconds": st.floats() | json_values, "resumed_at": st.lists(st.integers(-1, 3) | json_values),
    "rng": st.lists(st.lists(st.integers())) | json_values})
VALID_PROGRESS = {"version": 1, "epochs_done": 1, "history": [{"epoch": 1, "loss": 2.0}], "best_val_loss": None,
                  "epoch_seconds": [0.5], "fit_seconds": 0.5, "resumed_at": [], "rng": [[0, 1]]}
# one field of a valid record replaced at a time, so the fuzzer also reaches the later checks
mutated_progress = st.tuples(st.sampled_from(sorted(VALID_PROGRESS)), json_values).map(
    lambda kv: {**VALID_PROGRESS, kv[0]: kv[1]})


@SETTINGS
@given(record=st.just(VALID_PROGRESS) | progress_fields | mutated_progress | json_values)
def test_random_checkpoint_records_are_refused_or_valid(record):
    """A checkpoint's progress record is parsed as data: a Progress of sane values, or one line."""
    try:
        progress = _check_progress(record, "checkpoint.weights.h5")
    except UsageError as e:
        assert "\n" not in str(e) and "the checkpoint is damaged" in str(e)
        count("refused")
        return
    assert progress.epochs_done == len(progress.history) >= 0
    count("accepted")


VALID_META = {"format_version": 1, "config": {}, "input_shape": [8, 8, 1], "num_classes": None, "data": {}}
mutated_meta = st.tuples(st.sampled_from(sorted(VALID_META)), plausible | json_values | preset_dicts).map(
    lambda kv: {**VALID_META, kv[0]: kv[1]})


@SETTINGS
@given(meta=mutated_meta | st.fixed_dictionaries({}, optional={
    "format_version": st.just(1) | st.integers(-1, 3) | json_values,
    "config": st.just({}) | preset_dicts | json_values,
    "input_shape": st.just([8, 8, 1]) | st.lists(st.integers(-1, 5000), max_size=4) | json_values,
    "num_classes": st.none() | st.integers(-1, 20) | json_values, "data": json_values}) | json_values)
def test_random_run_configs_are_refused_or_valid(meta):
    """config.json of a run directory (what vae-plot/sample/eval and --resume read first)."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "config.json").write_text(json.dumps(meta))
        try:
            config, shape, _, _ = read_run_config(Path(tmp))
        except UsageError as e:
            assert "\n" not in str(e)
            count("refused")
            return
    assert len(shape) == 3 and config.latent_dim >= 1
    count("accepted")


def test_the_fuzzers_ran():
    """Every fuzzer ran its examples and reached both outcomes (counts are in docs/reliability.md)."""
    if len(COUNTS) < 4:
        pytest.skip("run together with the fuzz tests above")
    print(f"fuzz cases: {COUNTS}")
    for test, outcomes in COUNTS.items():
        assert sum(outcomes.values()) >= SETTINGS.max_examples, test
        assert outcomes["refused"] and outcomes["accepted"], (test, outcomes)
