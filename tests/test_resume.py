"""Interrupt and resume, for real: `vae-train` subprocesses are stopped with SIGINT, SIGTERM and
SIGKILL after an epoch has finished, the run directory is checked for half-written files after
each, the run is resumed, and the result is compared bit for bit with a run that was never
interrupted. Also the --resume checks (resume.py): what may change, and what is refused."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from matplotlib import image as mpimg

from vae_cli.checkpoint import read_progress
from vae_cli.cli.train import main
from vae_cli.resume import plan_resume
from vae_cli.run import run_lock

ROOT = Path(__file__).resolve().parents[1]
TEMPORARY = re.compile(r"^\.(history|best|checkpoint|epoch-[0-9]+)-[A-Za-z0-9_]+\.(csv|weights\.h5|png)$")
EPOCHS = 12  # epochs take ~50 ms here: a signal lands one to three epochs after it is sent


@pytest.fixture(scope="module")
def blobs_npz(tmp_path_factory) -> Path:
    """1,000 train / 200 test 28x28 images: blurred random blobs, enough to learn something."""
    rng = np.random.default_rng(0)
    base = rng.random((1200, 7, 7)) > 0.6
    x = (np.kron(base, np.ones((4, 4))) * 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, x_train=x[:1000], x_test=x[1000:])
    return path


def train_args(npz: Path, out: Path, name: str) -> list[str]:
    # TensorFlow, the engine of the in-process reference (test_engines.py resumes a JAX run)
    return ["--arch", "mlp", "--hidden-dim", "32", "--dataset", f"npz:{npz}", "--epochs", str(EPOCHS),
            "--batch-size", "50", "--seed", "5", "--out", str(out), "--name", name, "--backend", "tensorflow"]


@pytest.fixture(scope="module")
def reference_run(blobs_npz, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    assert main(train_args(blobs_npz, out, "ref")) == 0
    (run,) = out.iterdir()
    return run


def stop_after_next_epoch(args: list[str], run_dir_parent: Path, sig: int, done_before: int):
    """Run vae-train in a subprocess; send `sig` once a checkpoint past `done_before` exists."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "vae_cli.cli.train", *args], cwd=run_dir_parent,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        checkpoints = list(run_dir_parent.glob("*/checkpoint.weights.h5"))
        if checkpoints and read_progress(checkpoints[0])[0].epochs_done > done_before:
            break
        time.sleep(0.02)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=180)
    return proc.returncode, stderr


def assert_nothing_half_written(run: Path, killed: bool = False) -> None:
    """Every file decodes; no temporary file was left behind (after kill -9 only hidden
    temporaries of files being written, which the resume removes)."""
    leftovers = [p for p in run.rglob(".*")]
    if killed:
        leftovers = [p for p in leftovers if not TEMPORARY.match(p.name)]
    assert not leftovers, leftovers
    for path in run.rglob("*"):
        if TEMPORARY.match(path.name):
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".h5":
            with h5py.File(path, "r") as f:
                assert len(f.keys()) > 0
        elif path.suffix == ".png":
            assert mpimg.imread(path).size > 0
        elif path.suffix == ".csv":
            rows = list(csv.DictReader(path.open()))
            assert all(len(r) == len(rows[0]) and None not in r.values() for r in rows)


def weights(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def history_rows(run: Path) -> list[dict]:
    return list(csv.DictReader((run / "history.csv").open()))


def test_run_killed_three_ways_resumes_to_the_uninterrupted_result(blobs_npz, reference_run, tmp_path, capsys):
    """SIGINT, then SIGTERM on the resumed process, then SIGKILL on the next one; the final
    in-process resume must end exactly (bit for bit) where the uninterrupted run ended."""
    out = tmp_path / "runs"
    out.mkdir()
    args, finished, stops = train_args(blobs_npz, out, "cut"), 0, []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        returncode, stderr = stop_after_next_epoch(args, out, sig, finished)
        (run,) = out.iterdir()
        assert "Traceback" not in stderr
        progress = read_progress(run / "checkpoint.weights.h5")[0]
        assert finished < progress.epochs_done < EPOCHS, "the run ended before the signal reached it"
        finished = progress.epochs_done
        stops.append(finished)
        assert_nothing_half_written(run, killed=sig == signal.SIGKILL)
        rows = [r["epoch"] for r in history_rows(run)]
        # kill -9 may land between an epoch's history row and its checkpoint (the resume drops the row)
        assert rows[:finished] == [str(e) for e in range(1, finished + 1)]
        assert len(rows) - finished in ((0, 1) if sig == signal.SIGKILL else (0,))
        if sig == signal.SIGKILL:
            assert returncode == -signal.SIGKILL  # no handler runs: only the atomic writes protect
        else:
            assert returncode == 128 + sig  # 130, 143
            last = stderr.strip().splitlines()[-1]
            assert f"interrupted by {sig.name} with {finished} of {EPOCHS} epochs finished" in last
            assert last.endswith(f"Resume with: vae-train --resume {run}")
            metrics = json.loads((run / "metrics.json").read_text())
            assert metrics["status"] == "interrupted" and metrics["epochs_completed"] == finished
        args = ["--resume", str(run)]
    before = history_rows(run)[:finished]

    assert main(["--resume", str(run)]) == 0
    assert f"resuming at epoch {finished + 1} of {EPOCHS}" in capsys.readouterr().out
    after = history_rows(run)
    assert after[:finished] == before  # appended, nothing rewritten
    assert after == history_rows(reference_run)  # same numbers, bit for bit (repr of floats)
    for name in ("vae.weights.h5", "best.weights.h5"):
        ref, got = weights(reference_run / name), weights(run / name)
        assert ref.keys() == got.keys()
        assert all(np.array_equal(ref[k], got[k]) for k in ref), f"{name} differs from the reference"
    assert {p.name for p in run.iterdir()} == {p.name for p in reference_run.iterdir()}
    assert sorted(os.listdir(run / "samples")) == sorted(os.listdir(reference_run / "samples"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == EPOCHS
    assert metrics["resumed_at_epochs"] == stops
    assert_nothing_half_written(run)


def test_resume_extends_a_finished_run_and_refuses_what_would_change_it(reference_run, tmp_path, capsys):
    run = tmp_path / reference_run.name
    shutil.copytree(reference_run, run)
    refusals = [
        (["--resume", str(run)], f"already finished all {EPOCHS} epochs; give --epochs N with N > {EPOCHS}"),
        (["--resume", str(run), "--epochs", "2"], f"--epochs 2: the run has already finished {EPOCHS} epochs"),
        (["--resume", str(run), "--latent-dim", "3", "--epochs", "9"],
         "--latent-dim 3 (the run has 2): a resumed run keeps the settings it started with"),
        (["--resume", str(tmp_path)], "config.json is missing"),
    ]
    for argv, message in refusals:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    with run_lock(run):  # as if another process were training this run right now
        assert main(["--resume", str(run), "--epochs", "9"]) == 2
        assert "is being trained by another vae-train process" in capsys.readouterr().err
    # a setting equal to the saved one is fine, and --epochs extends the run
    assert main(["--resume", str(run), "--epochs", str(EPOCHS + 1), "--arch", "mlp"]) == 0
    assert [r["epoch"] for r in history_rows(run)] == [str(e) for e in range(1, EPOCHS + 2)]
    assert history_rows(run)[:EPOCHS] == history_rows(reference_run)
    assert json.loads((run / "config.json").read_text())["config"]["epochs"] == EPOCHS + 1


def test_killed_before_the_first_checkpoint_restarts_from_epoch_1(reference_run, tmp_path):
    run = tmp_path / reference_run.name
    shutil.copytree(reference_run, run)
    (run / "checkpoint.weights.h5").unlink()  # killed between history.csv and the first checkpoint
    (run / "metrics.json").unlink()
    plan = plan_resume(str(run), None, {})
    assert plan.epochs_done == 0 and plan.config.epochs == EPOCHS


def test_ctrl_c_while_the_final_figures_are_drawn_resumes_to_a_complete_run(
        blobs_npz, tmp_path, capsys, monkeypatch):
    import vae_cli.trainer as trainer

    draw = trainer.draw_figures

    def ctrl_c_then_draw(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # lands in the handler, outside fit: stops at once
        return draw(*args, **kwargs)

    monkeypatch.setattr(trainer, "draw_figures", ctrl_c_then_draw)
    out = tmp_path / "runs"
    assert main([*train_args(blobs_npz, out, "late"), "--epochs", "1"]) == 130
    (run,) = out.iterdir()
    assert capsys.readouterr().err.strip().endswith(f"Resume with: vae-train --resume {run}")
    assert json.loads((run / "metrics.json").read_text())["status"] == "interrupted"
    assert_nothing_half_written(run)
    monkeypatch.undo()
    assert main(["--resume", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 1
    assert (run / "manifold.png").is_file() and [r["epoch"] for r in history_rows(run)] == ["1"]
