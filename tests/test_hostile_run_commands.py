"""Hostile and broken input for the commands that read a run: vae-plot, vae-sample, vae-eval.

Same contract and harness as tests/test_hostile_input.py (one row of docs/reliability.md per case): the
documented exit code, one stderr line naming the problem and the fix, no traceback, no existing
file changed, and for exit code 2 nothing written at all. The run is a copy of the shared tiny
Gaussian run (12x12 images, latent 2, unconditional) or of the conditional MNIST run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import vae_cli.evaluate
import vae_cli.generated
import vae_cli.figures  # noqa: F401
from tests.faults import FullDisk, read_only
from tests.test_hostile_input import (
    Case,
    Ctx,
    check_case,
    conv_weights_in_place_of_mlp,
    edit_config,
    pickled_npz,
    symlink_out,
    truncate,
)


def on_run(*argv: str, edit: Callable[[Path], None] = lambda run: None, conditional: bool = False,
           extra: Callable[[Ctx, Path], list[str]] = lambda c, run: []) -> Callable[[Ctx], list[str]]:
    """argv for a command on a (possibly damaged) copy of a run."""
    def make(c):
        run = c.run_copy(conditional)
        edit(run)
        return [str(run), *argv, *extra(c, run)]
    return make


def write_config(text: str) -> Callable[[Path], None]:
    return lambda run: (run / "config.json").write_text(text)


def config_as_folder(run: Path) -> None:
    (run / "config.json").unlink()
    (run / "config.json").mkdir()


def npz(flag: str = "--dataset", **arrays) -> Callable[[Ctx, Path], list[str]]:
    def make(c, run):
        np.savez(c.tmp / "data.npz", **arrays)
        return [flag, f"npz:{c.tmp / 'data.npz'}"]
    return make


def object_npz(c: Ctx, run: Path) -> list[str]:
    return pickled_npz(c)[:2]


def out_file(flag: str) -> Callable[[Ctx, Path], list[str]]:
    return lambda c, run: [flag, str(c.write("taken", "a file that must survive"))]


def out_read_only(flag: str, name: str) -> Callable[[Ctx, Path], list[str]]:
    def make(c, run):
        c.read_only = read_only(c.tmp / "ro", c.monkeypatch)
        c.read_only.__enter__()
        return [flag, str(c.tmp / "ro" / name)]
    return make


def out_disk_full(flag: str, name: str) -> Callable[[Ctx, Path], list[str]]:
    def make(c, run):
        (c.tmp / "disk").mkdir()
        disk = FullDisk(c.tmp / "disk", c.monkeypatch)
        disk.fill()
        c.cleanup = disk.close
        return [flag, str(c.tmp / "disk" / name)]
    return make


def out_not_empty(c: Ctx, run: Path) -> list[str]:
    (c.tmp / "digits").mkdir()
    (c.tmp / "digits" / "keep.png").write_bytes(b"precious")
    return ["--out", str(c.tmp / "digits")]


def not_a_run(command: str) -> Case:
    return Case(f"{command[4:]}-not-a-run", command, lambda c: [str(c.tmp)],
                r"is not a vae-cli run: config.json is missing")


DISK_FULL = r"No space left on device \(\S+\): the disk is full; free some space"
DIGITS = {"x_test": np.zeros((5, 28, 28), np.uint8), "y_test": np.array([0, 1, 2, 3, 20]),
          "x_train": np.zeros((5, 28, 28), np.uint8), "y_train": np.arange(5)}

RUN_CASES = [
    # vae-plot
    not_a_run("vae-plot"),
    Case("plot-run-is-a-file", "vae-plot", lambda c: [str(c.write("run", "x"))],
         r"is not a directory; give a run directory made by vae-train"),
    Case("plot-weights-truncated", "vae-plot", on_run(edit=truncate("vae.weights.h5")),
         r"vae.weights.h5: cannot read the weights \(.*\); the file is truncated or corrupt"),
    Case("plot-conv-weights-under-mlp-config", "vae-plot", on_run(edit=conv_weights_in_place_of_mlp),
         r"vae.weights.h5 does not match config.json: the file holds \d+ arrays, the model config.json"),
    Case("plot-grid-zero", "vae-plot", on_run("--grid", "0"), r"--grid: expected an integer from 2 to 100, got 0"),
    Case("plot-range-negative", "vae-plot", on_run("--range", "-1"), r"--range: expected a number > 0 .*got -1"),
    Case("plot-what-bogus", "vae-plot", on_run("--what", "latent,bogus"),
         r"unknown figure\(s\) 'bogus'; choose from latent, manifold"),
    Case("plot-tsne-on-a-2d-latent", "vae-plot", on_run("--tsne"),
         r"--tsne: this run's latent space is 2-D and is drawn as it is"),
    Case("plot-out-is-the-run", "vae-plot", on_run(extra=lambda c, run: ["--out", str(run)]),
         r"is the run directory itself; vae-plot never overwrites the figures training wrote"),
    Case("plot-out-is-a-file", "vae-plot", on_run(extra=out_file("--out")),
         r"--out: \S+ exists and is not a folder"),
    Case("plot-out-read-only", "vae-plot", on_run(extra=out_read_only("--out", "figs")),
         r"--out: cannot write under \S+ \(not writable\)"),
    Case("plot-out-disk-full", "vae-plot", on_run("--what", "manifold", "--grid", "2",
                                                  extra=out_disk_full("--out", "figs")), DISK_FULL, code=1),
    Case("plot-npz-object-array", "vae-plot", on_run(extra=object_npz), r"holds pickled/object data"),
    Case("plot-dataset-of-another-image-shape", "vae-plot",
         on_run(extra=npz(x=np.zeros((20, 8, 8), np.uint8))),
         r"has 8x8x1 images but this run was trained on 12x12x1; pick a dataset with the same image shape"),
    Case("plot-traversal-index-out-of-range", "vae-plot", on_run("--what", "traversal", "--index", "999999"),
         r"--index: expected 0 to 59 \(the held-out split has 60 images\), got 999999"),
    Case("plot-history-damaged", "vae-plot",
         on_run("--what", "loss", edit=lambda run: (run / "history.csv").write_text("epoch,loss\n1,abc\n")),
         r"history.csv: unreadable \(.*\); the loss curve cannot be drawn"),
    # vae-sample
    not_a_run("vae-sample"),
    Case("sample-n-zero", "vae-sample", on_run("-n", "0"), r"argument -n: expected an integer from 1 to 100000, got 0"),
    Case("sample-n-negative", "vae-sample", on_run("-n", "-3"), r"argument -n: expected an integer from 1"),
    Case("sample-n-too-many", "vae-sample", on_run("-n", "100001"), r"argument -n: .*got 100001"),
    Case("sample-z-wrong-dimension", "vae-sample", on_run("--z", "0.5,1,2"),
         r"--z: each point needs 2 values \(this run's latent_dim\), got 3"),
    Case("sample-z-not-numeric", "vae-sample", on_run("--z", "0.5,abc"),
         r"--z: expected comma-separated numbers like 0.5,-1.2 .*got '0.5,abc'"),
    Case("sample-z-infinite", "vae-sample", on_run("--z", "inf,0"), r"--z: expected finite numbers, got 'inf,0'"),
    Case("sample-interpolate-index-out-of-range", "vae-sample", on_run("--interpolate", "0", "60"),
         r"--interpolate: indexes must be 0 to 59 \(the held-out split has 60 images\), got 0 60"),
    Case("sample-steps-one", "vae-sample", on_run("--interpolate", "0", "1", "--steps", "1"),
         r"--steps: expected an integer from 2 to 1000, got 1"),
    Case("sample-label-on-an-unconditional-run", "vae-sample", on_run("--label", "7"),
         r"--label: this run is not conditional.*train one with vae-train --conditional"),
    Case("sample-label-beyond-the-classes", "vae-sample", on_run("--label", "12", conditional=True),
         r"--label: expected a class from 0 to 9, got 12"),
    Case("sample-temperature-negative", "vae-sample", on_run("--temperature", "-0.5"),
         r"--temperature: expected a number >= 0 and <= 100, got -0.5"),
    Case("sample-binarize-gaussian-run", "vae-sample", on_run("--binarize"),
         r"--binarize draws Bernoulli pixels, but this run's likelihood is gaussian"),
    Case("sample-config-is-a-folder", "vae-sample", on_run(edit=config_as_folder),
         r"config.json is a folder, not a file; this run directory is damaged"),
    Case("sample-out-not-empty", "vae-sample", on_run(extra=out_not_empty),
         r"--out: \S+ already holds files; vae-sample writes only into a new or empty folder"),
    Case("sample-out-is-a-file", "vae-sample", on_run(extra=out_file("--out")),
         r"--out: \S+ exists and is not a folder"),
    Case("sample-out-read-only", "vae-sample", on_run(extra=out_read_only("--out", "digits")),
         r"--out: cannot write under \S+ \(not writable\)"),
    Case("sample-out-disk-full", "vae-sample", on_run("-n", "3", extra=out_disk_full("--out", "digits")),
         DISK_FULL, code=1),
    # vae-eval
    not_a_run("vae-eval"),
    Case("eval-config-from-the-future", "vae-eval", on_run(edit=edit_config(lambda m: m.update(format_version=99))),
         r"format_version 99 is newer than this vae-cli understands \(\d+\); upgrade vae-cli"),
    Case("eval-config-invalid-json", "vae-eval", on_run(edit=write_config('{"format_version": 1,')),
         r"config.json: unreadable or corrupt JSON \(.*\); the run cannot be loaded"),
    Case("eval-config-is-a-list", "vae-eval", on_run(edit=write_config("[1, 2]")),
         r"config.json: expected a JSON object; is this a vae-cli run\?"),
    Case("eval-weights-missing", "vae-eval", on_run(edit=lambda run: (run / "vae.weights.h5").unlink()),
         r"vae.weights.h5 is missing; the run did not finish saving its weights"),
    Case("eval-weights-symlink-outside", "vae-eval", on_run(edit=symlink_out("vae.weights.h5")),
         r"vae.weights.h5 is a symlink to \S+, outside the run directory; remove the link"),
    Case("eval-iw-samples-negative", "vae-eval", on_run("--iw-samples", "-1"),
         r"--iw-samples: expected an integer from 0 to 1000000, got -1"),
    Case("eval-batch-size-zero", "vae-eval", on_run("--batch-size", "0"),
         r"--batch-size: expected an integer from 1 to 65536, got 0"),
    Case("eval-npz-wrong-shape", "vae-eval", on_run(extra=npz(x=np.zeros(100, np.uint8))),
         r"images have shape \(100,\); expected non-empty \(N, H, W\)"),
    Case("eval-labels-beyond-the-classes", "vae-eval", on_run(conditional=True, extra=npz(**DIGITS)),
         r"has label 20, but this run knows labels 0..9 only"),
    Case("eval-json-is-a-folder", "vae-eval", on_run(extra=lambda c, run: ["--json", str(c.tmp)]),
         r"--json: \S+ is a folder; give a file path like \S+eval.json"),
    Case("eval-json-read-only", "vae-eval", on_run(extra=out_read_only("--json", "eval.json")),
         r"--json: cannot write under \S+ \(not writable\)"),
    Case("eval-json-disk-full", "vae-eval", on_run("--iw-samples", "2", extra=out_disk_full("--json", "eval.json")),
         DISK_FULL, code=1),
]


@pytest.fixture
def trained_run(gaussian_extreme_run) -> Path:
    return gaussian_extreme_run


@pytest.mark.parametrize("case", RUN_CASES, ids=[c.id for c in RUN_CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, tmp_path, capsys, monkeypatch, request):
    check_case(case, tmp_path, capsys, monkeypatch, request)


def test_every_case_runs_its_own_command():
    assert {c.id.split("-")[0] for c in RUN_CASES} == {"plot", "sample", "eval"}
    assert all(c.command == "vae-" + c.id.split("-")[0] for c in RUN_CASES)
    assert len({c.id for c in RUN_CASES}) == len(RUN_CASES)
