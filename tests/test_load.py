"""Load: vae-sample's memory does not grow with -n, its batches change nothing, and the progress
line of vae-sample and vae-eval is drawn on a terminal only. (vae-eval's memory against K:
test_evaluate.test_many_iw_samples_are_decoded_in_bounded_chunks. Real sizes, timed:
benchmarks/load.py.)"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vae_cli.latent
from vae_cli.cli.common import ProgressLine
from vae_cli.cli.eval import main as eval_main
from vae_cli.cli.sample import main as sample_main
from vae_cli.latent import Samples, generate, generate_batches


def synthetic_batches(total: int, batch: int = 100, side: int = 64, held: list | None = None):
    """Random images in batches; `held` gets the traced memory in use as each batch is asked for."""
    rng = np.random.default_rng(0)
    for start in range(0, total, batch):
        if held is not None:
            held.append(tracemalloc.get_traced_memory()[0])
        k = min(batch, total - start)
        yield Samples(rng.random((k, side, side, 1), dtype=np.float32), np.zeros((k, 2), np.float32), None)


STREAM_3000 = """
import json, sys, tracemalloc
from pathlib import Path
from tests.test_load import synthetic_batches
from vae_cli.generated import write_samples
held = []
tracemalloc.start()
write_samples(Path(sys.argv[1]), synthetic_batches(3000, held=held), 3000, title="t")
print(json.dumps(held))
"""


def test_writing_samples_holds_one_batch_not_all_of_them(tmp_path):
    """While 3,000 images stream through, memory in use stays flat: from the 5th batch to the
    last it grows by far less than the images written in between would take if kept. (Not by
    zero: pathlib interns every file name it parses, about 100 bytes per image.) Measured in a
    fresh process, as vae-sample runs, away from what the test session holds on to."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", STREAM_3000, str(tmp_path)], check=False, capture_output=True,
                          text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)
    assert done.returncode == 0, done.stderr
    held = json.loads(done.stdout.splitlines()[-1])
    passed_through = (len(held) - 5) * 100 * 64 * 64 * 4  # bytes of the images between
    assert held[-1] - held[4] < 0.1 * passed_through, (held[4], held[-1], passed_through)
    arrays = np.load(tmp_path / "samples.npy", allow_pickle=False)
    np.testing.assert_array_equal(arrays, np.concatenate([b.images for b in synthetic_batches(3000)]))
    assert len(list(tmp_path.glob("sample-*.png"))) == 3000


def test_batches_give_the_same_samples_as_one_call(mlp_run):
    from vae_cli.run import load_run

    run = load_run(mlp_run)
    one = generate(run.decoder, 2, n=70, seed=3, temperature=0.8, binary=True, batch_size=1024)
    pieces = generate(run.decoder, 2, n=70, seed=3, temperature=0.8, binary=True, batch_size=16)
    np.testing.assert_array_equal(one.z, pieces.z)
    np.testing.assert_allclose(one.images, pieces.images, atol=1e-6)
    assert [len(b.z) for b in generate_batches(run.decoder, 2, n=70, seed=3, batch_size=16)] == [16] * 4 + [6]


def test_vae_sample_decodes_in_batches_whatever_n(mlp_run, tmp_path, monkeypatch):
    sizes = []
    real_decode = vae_cli.latent.decode

    def counting_decode(decoder, z, labels=None, **kwargs):
        sizes.append(len(z))
        return real_decode(decoder, z, labels, **kwargs)

    monkeypatch.setattr(vae_cli.latent, "decode", counting_decode)
    monkeypatch.setattr(vae_cli.latent, "DECODE_BATCH", 64)
    assert sample_main([str(mlp_run), "-n", "300", "--out", str(tmp_path / "out")]) == 0
    assert sizes == [64] * 4 + [44]
    assert np.load(tmp_path / "out" / "samples.npy").shape == (300, 28, 28, 1)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_rewrites_one_line_on_a_terminal_only():
    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        progress = ProgressLine("vae-eval", stream=stream, min_interval=0)
        for done in (100, 200, 300):
            progress(done, 300)
    assert pipe.getvalue() == ""
    text = tty.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "vae-eval: 300/300 images (100%)" in text


@pytest.mark.parametrize("terminal", [True, False])
def test_commands_draw_progress_on_a_terminal_and_nothing_in_a_log(terminal, mlp_run, tmp_path, monkeypatch):
    err = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert sample_main([str(mlp_run), "-n", "20", "--out", str(tmp_path / "s")]) == 0
    assert eval_main([str(mlp_run), "--iw-samples", "4", "--json", str(tmp_path / "e.json")]) == 0
    if terminal:
        assert "\rvae-sample: 20/20 images (100%)" in err.getvalue()
        assert "\rvae-eval: " in err.getvalue() and " images (100%)" in err.getvalue()
    else:
        assert err.getvalue() == ""


def test_ctrl_c_in_vae_sample_leaves_whole_pngs_and_no_short_npy(mlp_run, tmp_path, monkeypatch, capsys):
    real = vae_cli.latent.generate_batches

    def interrupted_after_two_batches(*args, **kwargs):
        batches = real(*args, **{**kwargs, "batch_size": 16})
        yield next(batches)
        yield next(batches)
        raise KeyboardInterrupt

    monkeypatch.setattr(vae_cli.latent, "generate_batches", interrupted_after_two_batches)
    out = tmp_path / "out"
    assert sample_main([str(mlp_run), "-n", "100", "--out", str(out)]) == 130
    assert capsys.readouterr().err.strip().startswith("vae-sample: interrupted; kept 32 PNGs")
    assert sorted(p.name for p in out.iterdir()) == [f"sample-{i:04d}.png" for i in range(1, 33)]
    for png in out.iterdir():
        with Image.open(png) as image:
            image.load()  # whole files: they decode
