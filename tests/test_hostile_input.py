"""Hostile and broken input, one parametrised case per row of the table "Bad input" in docs/reliability.md.

Every case builds its input in a fresh folder, snapshots every file's hash, runs the command
in-process, and checks: the documented exit code, exactly one line on stderr matching the
documented message, no traceback, and no existing file changed (bad input, exit 2, writes
nothing at all). Cases that need a trained run copy one tiny run made once per session.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tests.faults import FullDisk, exit_code, read_only, snapshot
from vae_cli.cli.eval import main as eval_main
from vae_cli.cli.plot import main as plot_main
from vae_cli.cli.sample import main as sample_main
from vae_cli.cli.train import main as train_main

COMMANDS = {"vae-train": train_main, "vae-plot": plot_main, "vae-sample": sample_main, "vae-eval": eval_main}
RELIABILITY_DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"


@dataclass
class Ctx:
    """What a case may use: its own empty folder, and copies of the shared trained runs."""

    tmp: Path
    fixture: Callable[[str], Path]  # request.getfixturevalue
    monkeypatch: pytest.MonkeyPatch

    @property
    def out(self) -> str:
        return str(self.tmp / "runs")

    def run_copy(self, conditional: bool = False) -> Path:
        """A copy of the unconditional Gaussian 12x12 run, or of the conditional 28x28 MNIST run."""
        run = self.tmp / "run"
        shutil.copytree(self.fixture("cond_run" if conditional else "trained_run"), run)
        return run

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path


@dataclass
class Case:
    id: str
    command: str
    make: Callable[[Ctx], list[str]]  # builds the hostile input, returns argv
    message: str  # regex that the one stderr line must match
    code: int = 2


# ---------------------------------------------------------------------------- builders


def preset(text: str | bytes) -> Callable[[Ctx], list[str]]:
    return lambda c: ["--preset", str(c.write("preset.json", text)), "--out", c.out]


def flags(*argv: str) -> Callable[[Ctx], list[str]]:
    return lambda c: [*argv, "--out", c.out]


def npz_dataset(**arrays) -> Callable[[Ctx], list[str]]:
    def make(c):
        np.savez(c.tmp / "data.npz", **arrays)
        return ["--dataset", f"npz:{c.tmp / 'data.npz'}", "--out", c.out]
    return make


def truncated_npz(c: Ctx) -> list[str]:
    np.savez(c.tmp / "full.npz", x=np.zeros((50, 8, 8), np.uint8))
    c.write("data.npz", (c.tmp / "full.npz").read_bytes()[:300])
    return ["--dataset", f"npz:{c.tmp / 'data.npz'}", "--out", c.out]


class Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('code ran')",))


def pickled_npz(c: Ctx) -> list[str]:
    x = np.empty(2, dtype=object)
    x[0], x[1] = Evil(), Evil()
    np.savez(c.tmp / "data.npz", x=x)
    return ["--dataset", f"npz:{c.tmp / 'data.npz'}", "--out", c.out]


def idx_folder(images: bytes | None) -> Callable[[Ctx], list[str]]:
    def make(c):
        folder = c.tmp / "idx"
        folder.mkdir()
        if images is not None:
            (folder / "train-images-idx3-ubyte").write_bytes(images)
        return ["--dataset", f"idx:{folder}", "--out", c.out]
    return make


def image_folder(files: dict[str, bytes]) -> Callable[[Ctx], list[str]]:
    def make(c):
        folder = c.tmp / "images"
        folder.mkdir()
        for name, data in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        return ["--dataset", f"folder:{folder}", "--out", c.out]
    return make


IDX_HEADER = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (10, 28, 28))


def out_is_a_file(c: Ctx) -> list[str]:
    return ["--out", str(c.write("runs", "not a folder"))]


def out_read_only(c: Ctx) -> list[str]:
    c.read_only = read_only(c.tmp / "ro", c.monkeypatch)
    c.read_only.__enter__()
    return ["--out", str(c.tmp / "ro" / "runs")]


def out_disk_full(c: Ctx) -> list[str]:
    (c.tmp / "disk").mkdir()
    disk = FullDisk(c.tmp / "disk", c.monkeypatch)
    disk.fill()
    c.cleanup = disk.close
    np.savez(c.tmp / "data.npz", x=np.zeros((20, 8, 8), np.uint8))
    return ["--dataset", f"npz:{c.tmp / 'data.npz'}", "--arch", "mlp", "--hidden-dim", "8",
            "--epochs", "1", "--out", str(c.tmp / "disk")]


def resume_with(edit: Callable[[Path], None], *extra: str) -> Callable[[Ctx], list[str]]:
    def make(c):
        run = c.run_copy()
        edit(run)
        return ["--resume", str(run), *extra]
    return make


def edit_config(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(run):
        meta = json.loads((run / "config.json").read_text())
        change(meta)
        (run / "config.json").write_text(json.dumps(meta))
    return edit


def truncate(name: str, keep: float = 0.5) -> Callable[[Path], None]:
    def edit(run):
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[:int(len(data) * keep)])
    return edit


def symlink_out(name: str) -> Callable[[Path], None]:
    def edit(run):
        target = run.parent / "elsewhere.weights.h5"
        shutil.copy(run / name, target)
        (run / name).unlink()
        (run / name).symlink_to(target)
    return edit


def nothing(run: Path) -> None:
    pass


# ---------------------------------------------------------------------------- the table

MISMATCH = r"checkpoint.weights.h5 does not match config.json: the file holds \d+ arrays, the model config.json"
# a finished run's checkpoint keeps its model weights in vae.weights.h5, which is checked instead
FINISHED_MISMATCH = MISMATCH.replace("checkpoint", "vae")

CASES = [
    # presets
    Case("train-preset-truncated-json", "vae-train", preset('{"latent_dim": 2, "epochs": '),
         r"preset \S+: invalid JSON at line 1, column 29: Expecting value"),
    Case("train-preset-is-a-list", "vae-train", preset("[1, 2]"), r"expected a JSON object .* got a list"),
    Case("train-preset-empty-file", "vae-train", preset(""), r"invalid JSON at line 1, column 1"),
    Case("train-preset-nan", "vae-train", preset('{"beta": NaN}'), r"NaN is not allowed in a preset"),
    Case("train-preset-huge-number", "vae-train", preset('{"latent_dim": 1' + "0" * 400 + "}"),
         r"latent_dim: expected an integer from 1 to 4096"),
    Case("train-preset-overflowing-float", "vae-train", preset('{"beta": 1e999}'),
         r"beta: expected a finite number, got inf"),
    Case("train-preset-unknown-key", "vae-train", preset('{"latent_dims": 2}'),
         r"unknown key\(s\) 'latent_dims'; valid keys: dataset"),
    Case("train-preset-wrong-type", "vae-train", preset('{"epochs": "10"}'),
         r"epochs: expected an integer, got '10'"),
    Case("train-preset-python-callable", "vae-train", preset('{"optimizer": "os.system"}'),
         r"optimizer: expected one of adam, rmsprop, got 'os.system'"),
    Case("train-preset-not-utf8", "vae-train", preset(b"\xff\xfe{\x00"), r"cannot read it \(UnicodeDecodeError"),
    Case("train-preset-deeply-nested", "vae-train", preset("[" * 100_000 + "]" * 100_000),
         r"preset \S+: maximum recursion depth exceeded"),
    Case("train-preset-is-a-directory", "vae-train", lambda c: ["--preset", str(c.tmp), "--out", c.out],
         r"--preset: \S+ is not a file"),
    # flags
    Case("train-name-path-traversal", "vae-train", flags("--name", "../../etc"),
         r"--name: expected letters, digits, .*no '\.\.'"),
    Case("train-name-absolute-path", "vae-train", flags("--name", "/etc/cron.d"), r"--name: expected letters"),
    Case("train-epochs-huge", "vae-train", flags("--epochs", "1" + "0" * 30),
         r"--epochs: expected an integer from 1 to 1000000"),
    Case("train-learning-rate-nan", "vae-train", flags("--learning-rate", "nan"),
         r"--learning-rate: expected a finite number, got nan"),
    Case("train-batch-size-negative", "vae-train", flags("--batch-size", "-5"),
         r"--batch-size: expected an integer from 1"),
    Case("train-conv-filters-garbage", "vae-train", flags("--conv-filters", "32,abc"),
         r"argument --conv-filters: expected comma-separated integers"),
    Case("train-validation-split-out-of-range", "vae-train", flags("--validation-split", "1.5"),
         r"--validation-split: expected a number between 0 and 1"),
    # output folder
    Case("train-out-is-a-file", "vae-train", out_is_a_file, r"--out: \S+ exists and is not a directory"),
    Case("train-out-read-only", "vae-train", out_read_only,
         r"--out: (cannot create \S+ \(Read-only file system\)|\S+ is not writable)"),
    Case("train-out-disk-full", "vae-train", out_disk_full,
         r"writing into \S+ failed: No space left on device.*: the disk is full; free some space", code=1),
    # datasets
    Case("train-npz-object-arrays", "vae-train", pickled_npz,
         r"key 'x' holds pickled/object data, which is not loaded for safety"),
    Case("train-npz-truncated", "vae-train", truncated_npz, r"is not a readable \.npz archive"),
    Case("train-npz-wrong-shape", "vae-train", npz_dataset(x=np.zeros(100, np.uint8)),
         r"train images have shape \(100,\); expected non-empty \(N, H, W\)"),
    Case("train-npz-nan-pixels", "vae-train", npz_dataset(x=np.full((20, 8, 8), np.nan, np.float32)),
         r"contain NaN or Inf; clean the data first"),
    Case("train-npz-labels-mismatch", "vae-train", npz_dataset(x=np.zeros((20, 8, 8), np.uint8),
                                                              y=np.zeros(7, np.int64)),
         r"y has shape \(7,\) but there are 20 images"),
    Case("train-npz-is-a-directory", "vae-train", lambda c: ["--dataset", f"npz:{c.tmp}", "--out", c.out],
         r"\S+ is a folder, not a file; give the path of an \.npz file"),
    Case("train-idx-bad-magic", "vae-train", idx_folder(b"\x1f\x8c\x08\x03" + IDX_HEADER[4:] + bytes(7840)),
         r"bad magic number 0x1f8c0803 \(expected 0x00000803"),
    Case("train-idx-truncated", "vae-train", idx_folder(IDX_HEADER + bytes(1000)),
         r"holds 1,000 data bytes but its header says \(10, 28, 28\) = 7,840; the file is truncated"),
    Case("train-idx-empty-folder", "vae-train", idx_folder(None), r"no IDX images in \S+"),
    Case("train-folder-empty", "vae-train", image_folder({}), r"no \.png, \.jpg, .* files in \S+ or its subfolders"),
    Case("train-folder-only-broken-images", "vae-train",
         image_folder({"a.png": b"garbage", "b.jpg": b"\xff\xd8 not a jpeg", "c/d.png": b""}),
         r"none of the 3 image files could be read"),
    Case("train-folder-is-a-file", "vae-train",
         lambda c: ["--dataset", f"folder:{c.write('x.png', 'x')}", "--out", c.out],
         r"\S+ is a file, not a folder; give a folder holding PNG/JPEG/BMP/GIF images"),
    # resume
    Case("train-resume-not-a-run", "vae-train", lambda c: ["--resume", str(c.tmp)],
         r"is not a vae-cli run: config.json is missing"),
    Case("train-resume-changes-the-model", "vae-train", resume_with(nothing, "--latent-dim", "8"),
         r"--resume: --latent-dim 8 \(the run has 2\): a resumed run keeps the settings"),
    Case("train-resume-config-from-the-future", "vae-train",
         resume_with(edit_config(lambda m: m.update(format_version=99)), "--epochs", "3"),
         r"format_version 99 is newer than this vae-cli understands \(\d+\); upgrade vae-cli"),
    Case("train-resume-config-is-a-list", "vae-train",
         resume_with(lambda run: (run / "config.json").write_text("[]"), "--epochs", "3"),
         r"config.json: expected a JSON object"),
    Case("train-resume-truncated-checkpoint", "vae-train",
         resume_with(truncate("checkpoint.weights.h5"), "--epochs", "3"),
         r"checkpoint.weights.h5: unreadable \(.*\); the checkpoint is damaged"),
    Case("train-resume-mismatched-checkpoint", "vae-train",
         resume_with(edit_config(lambda m: m["config"].update(hidden_dim=9)), "--epochs", "3"),
         FINISHED_MISMATCH),
    Case("train-resume-checkpoint-of-another-architecture", "vae-train",
         resume_with(lambda run: conv_checkpoint_in_place_of_mlp(run), "--epochs", "3"),
         MISMATCH),
    Case("train-resume-symlink-outside", "vae-train",
         resume_with(symlink_out("checkpoint.weights.h5"), "--epochs", "3"),
         r"checkpoint.weights.h5 is a symlink to \S+, outside the run directory"),
    Case("train-resume-file-instead-of-run", "vae-train",
         lambda c: ["--resume", str(c.write("file.txt", "x"))], r"is not a directory; give a run directory"),
]


@pytest.fixture
def trained_run(gaussian_extreme_run) -> Path:
    """A finished 2-epoch MLP run (latent 2, 12x12 images); tests work on copies of it."""
    return gaussian_extreme_run



@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, tmp_path, capsys, monkeypatch, request):
    check_case(case, tmp_path, capsys, monkeypatch, request)


def check_case(case: Case, tmp_path: Path, capsys, monkeypatch, request) -> None:
    """Run one row of the table and check its contract (shared with test_hostile_run_commands)."""
    ctx = Ctx(tmp_path, request.getfixturevalue, monkeypatch)
    monkeypatch.chdir(tmp_path)  # a payload that ran would leave PWNED here
    argv = case.make(ctx)
    before = snapshot(tmp_path)
    capsys.readouterr()
    try:
        code = exit_code(COMMANDS[case.command], argv)
        after = snapshot(tmp_path)
    finally:
        getattr(ctx, "cleanup", lambda: None)()
        if hasattr(ctx, "read_only"):
            ctx.read_only.__exit__(None, None, None)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == case.code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{case.command}: "), lines[0]
    assert re.search(case.message, lines[0]), lines[0]
    assert {k: after.get(k) for k in before} == before, "an existing file was changed"
    if case.code == 2:
        assert after.keys() == before.keys(), "bad input must not write anything"
    assert not [p for p in tmp_path.rglob(".*") if p.name not in before], "temporary files left"
    assert not (tmp_path / "PWNED").exists()


def test_docs_table_lists_every_case():
    """The bad-input table of docs/reliability.md and the two hostile-input test files describe the same rows."""
    from tests.test_hostile_run_commands import RUN_CASES

    table = RELIABILITY_DOC.read_text().split("### Bad input")[1].split("\n### ")[0]
    ids = re.findall(r"^\| `([a-z0-9-]+)` \|", table, re.MULTILINE)
    assert len(ids) == len(set(ids))
    assert set(ids) == {c.id for c in CASES + RUN_CASES}


# ---------------------------------------------------------------------------- the run loader
# vae-plot, vae-sample, vae-eval and --resume read runs through run.load_run; its refusals are
# tested here directly too, including damage no command row covers (a pickle as weights).


def conv_weights_in_place_of_mlp(run: Path) -> None:
    import keras

    from vae_cli.config import Config
    from vae_cli.models import build_vae

    keras.utils.set_random_seed(0)
    other = build_vae(Config(arch="conv", conv_filters=(4,), hidden_dim=16), (12, 12, 1))
    (run / "vae.weights.h5").unlink()
    other.vae.save_weights(run / "vae.weights.h5")


def conv_checkpoint_in_place_of_mlp(run: Path) -> None:
    """A conv model's weights carrying the run's own progress record: Keras alone would load
    the dense layers it can place and keep the rest freshly initialised, without a word."""
    import h5py
    import keras

    from vae_cli.weights import write_weights
    from vae_cli.checkpoint import PROGRESS_ATTR
    from vae_cli.config import Config
    from vae_cli.models import build_vae

    with h5py.File(run / "checkpoint.weights.h5", "r") as f:
        progress = f.attrs[PROGRESS_ATTR]
    keras.utils.set_random_seed(0)
    other = build_vae(Config(arch="conv", conv_filters=(4,), hidden_dim=16), (12, 12, 1))
    write_weights(run / "checkpoint.weights.h5", other.vae, {PROGRESS_ATTR: progress})


def pickle_as_weights(run: Path) -> None:
    import pickle

    (run / "vae.weights.h5").write_bytes(pickle.dumps(Evil()))


def weights_as_folder(run: Path) -> None:
    (run / "vae.weights.h5").unlink()
    (run / "vae.weights.h5").mkdir()


LOADER_CASES = {
    "weights-missing": (lambda run: (run / "vae.weights.h5").unlink(), r"vae.weights.h5 is missing"),
    "weights-truncated": (truncate("vae.weights.h5"), r"cannot read the weights \(.*\); the file is truncated"),
    "weights-of-another-architecture": (conv_weights_in_place_of_mlp,
                                        r"vae.weights.h5 does not match config.json: the file holds \d+ arrays"),
    "weights-are-a-pickle": (pickle_as_weights, r"vae.weights.h5: not an HDF5 weights file"),
    "weights-are-a-folder": (weights_as_folder, r"vae.weights.h5 is a folder, not a weights file"),
    "weights-symlink-outside": (symlink_out("vae.weights.h5"), r"is a symlink to \S+, outside the run"),
    "config-from-the-future": (edit_config(lambda m: m.update(format_version=99)),
                               r"format_version 99 is newer than this vae-cli understands"),
    "config-not-json": (lambda run: (run / "config.json").write_text("{'arch': 'mlp'"),
                        r"config.json: unreadable or corrupt JSON"),
    "config-names-a-callable": (edit_config(lambda m: m["config"].update(arch="os.system")),
                                r"arch: expected one of mlp, conv"),
}


@pytest.mark.parametrize("name", sorted(LOADER_CASES))
def test_run_loader_refuses_damaged_runs(name, trained_run, tmp_path, monkeypatch):
    from vae_cli.errors import UsageError
    from vae_cli.run import load_run

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    damage, message = LOADER_CASES[name]
    damage(run)
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match=message) as refused:
        load_run(run)
    assert "\n" not in str(refused.value)
    assert snapshot(tmp_path) == before and not (tmp_path / "PWNED").exists()
