"""Fuzzing the commands that read a run: random flag values for vae-sample, vae-eval and vae-plot
never end in a traceback. Each example runs the command in-process on one tiny run: it either
finishes (exit 0) or is refused with exit code 2 and one stderr line.

To keep a few hundred examples fast, the run is loaded once (run.load_run is cached: its own
refusals are tested in test_hostile_*), vae-eval's compiled IW graph is reused across examples,
and vae-plot stops where it would start drawing (its figures are tested in test_cli_plot).
"""

from __future__ import annotations

import contextlib
import functools
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vae_cli.evaluate
import vae_cli.figures
import vae_cli.run
from vae_cli.cli import eval as eval_cli
from vae_cli.cli import plot as plot_cli
from vae_cli.cli import sample as sample_cli

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
OUTCOMES: dict[str, dict[int, int]] = {}


class ReachedDrawing(Exception):
    """vae-plot accepted every flag and would now draw."""


@pytest.fixture(scope="module")
def patched(gaussian_extreme_run):
    """The shared tiny run, with the slow steps that every example would repeat done once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vae_cli.run, "load_run", functools.lru_cache(vae_cli.run.load_run))
        mp.setattr(vae_cli.evaluate, "_compiled", functools.lru_cache(vae_cli.evaluate._compiled))
        mp.setattr(vae_cli.figures, "draw", lambda *a, **k: (_ for _ in ()).throw(ReachedDrawing()))
        yield gaussian_extreme_run


def run_command(name: str, main, argv: list[str]) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = e.code
        except ReachedDrawing:
            code = 0
    lines = err.getvalue().strip().splitlines()
    assert "Traceback" not in err.getvalue(), (argv, err.getvalue())
    assert code in (0, 2), (argv, err.getvalue())
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith(f"{name}: error: "), (argv, err.getvalue())
    counts = OUTCOMES.setdefault(name, {0: 0, 2: 0})
    counts[code] += 1


EDGES = ["nan", "inf", "-inf", "1e309", "-0", "0", "1", "2", "3", "-1", "-3", "", " ", "1e-400", "0x10", "1_0",
         "0.5,-1.2", "1,2,3", "0;0", "0,0;1,1", "0,0;1", ",", ";", "latent", "manifold,loss", "traversal", "all",
         "bogus", "npz:nope.npz", "idx:.", "folder:.", "mnist-5k", "59", "60", "100001", "1000001", "65537"]
values = st.one_of(st.text(max_size=12), st.integers(-5, 40).map(str), st.floats(-10, 10).map(repr),
                   st.sampled_from(EDGES))


# valid settings mixed in, so random values are also met after argparse, with a run loaded
VALID = {"-n": ["5"], "--seed": ["7"], "--temperature": ["0.5"], "--z": ["0.5,-1;0,0"], "--interpolate": ["0", "3"],
         "--steps": ["4"], "--iw-samples": ["8"], "--batch-size": ["16"], "--what": ["manifold,samples"],
         "--grid": ["5"], "--range": ["2.5"], "--index": ["3"], "--tsne": [], "--binarize": [], "--label": ["1"]}


def argv_from(flags: list[str], switches: tuple[str, ...] = ()):
    """Lists of (flag, value) pairs or valid settings; switches take no value; --interpolate two."""
    def tokens(flag, a, b):
        return [flag] if flag in switches else [flag, a, b] if flag == "--interpolate" else [flag, a]
    pair = st.builds(tokens, st.sampled_from(flags), values, values)
    valid = st.sampled_from([[f, *VALID[f]] for f in flags if f in VALID])
    return st.lists(pair | valid, max_size=4).map(lambda ps: [t for p in ps for t in p])


@SETTINGS
@given(argv=argv_from(["-n", "--seed", "--temperature", "--z", "--interpolate", "--steps", "--dataset",
                       "--label", "--binarize"], switches=("--binarize",)))
def test_vae_sample_flag_values(patched, argv):
    with tempfile.TemporaryDirectory() as tmp:
        run_command("vae-sample", sample_cli.main, [str(patched), *argv, "--out", str(Path(tmp) / "out")])


@SETTINGS
@given(argv=argv_from(["--dataset", "--iw-samples", "--batch-size", "--seed"]))
def test_vae_eval_flag_values(patched, argv):
    with tempfile.TemporaryDirectory() as tmp:
        run_command("vae-eval", eval_cli.main, [str(patched), *argv, "--json", str(Path(tmp) / "eval.json")])


@SETTINGS
@given(argv=argv_from(["--what", "--dataset", "--grid", "--range", "--tsne", "--index", "--seed"],
                      switches=("--tsne",)))
def test_vae_plot_flag_values(patched, argv):
    with tempfile.TemporaryDirectory() as tmp:
        run_command("vae-plot", plot_cli.main, [str(patched), *argv, "--out", str(Path(tmp) / "figs")])


def test_the_command_fuzzers_ran():
    """Each command's fuzzer ran its examples and saw both outcomes (the counts are in docs/reliability.md)."""
    if len(OUTCOMES) < 3:
        pytest.skip("run together with the fuzz tests above")
    print(f"command fuzz cases: {OUTCOMES}")
    for name, counts in OUTCOMES.items():
        assert sum(counts.values()) >= SETTINGS.max_examples, name
        assert counts[0] and counts[2], (name, counts)
