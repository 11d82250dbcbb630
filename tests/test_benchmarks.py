"""The benchmarks' own tests (benchmarks/ is not part of the package): how a child process is
measured, the speed benchmark's work counting and report, the fair benchmark's harness and
baselines. No timings are asserted."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import measure
from vae_cli.config import Config
from vae_cli.models import build_vae

REPO = Path(__file__).resolve().parents[1]
MB = 10**6


# ---------------------------------------------------------------- measure.run_measured


def test_peak_rss_is_the_childs_own_allocation():
    """A child that touches 300 MB of numpy reads 300 MB plus its interpreter, numpy and the
    launcher's floor (tens of MB), not less and not some other process's size."""
    code = "import numpy as np; a = np.ones(300_000_000 // 8); print(a.sum())"
    r = measure.run_measured([sys.executable, "-c", code])
    assert r.exit_code == 0 and r.output.strip() == "37500000.0"
    assert 300 * MB <= r.peak_rss_bytes <= 300 * MB + 150 * MB


def test_peak_rss_does_not_start_at_the_size_of_a_big_parent():
    """wait4 on a child forked (or vforked) straight from this process would report at least this
    process's resident size; a measured child that allocates nothing reads only its own few MB."""
    held = np.ones(400 * MB // 8)  # this process: > 400 MB resident
    r = measure.run_measured([sys.executable, "-c", "pass"])
    assert held.sum() > 0 and r.peak_rss_bytes < 60 * MB


def test_wall_time_and_line_stamps_follow_the_child():
    code = "import time; print('start', flush=True); time.sleep(0.6); print('end', flush=True)"
    r = measure.run_measured([sys.executable, "-c", code])
    start, end = r.first_line_time("start"), r.first_line_time("end")
    # the child slept 0.6 s in between; a stamp may lag its line on a busy machine, never lead it
    assert 0 <= start < end <= r.seconds and end - start >= 0.3 and r.seconds >= 0.6
    assert r.first_line_time("missing") is None


def test_a_failing_child_is_reported_with_its_output():
    code = "import sys; print('half done'); sys.exit(3)"
    assert measure.run_measured([sys.executable, "-c", code], check=False).exit_code == 3
    with pytest.raises(RuntimeError, match=r"exited with 3:\nhalf done"):
        measure.run_measured([sys.executable, "-c", code])
    with pytest.raises(RuntimeError, match="could not start no-such-program-here"):
        measure.run_measured(["no-such-program-here"])


def test_a_childs_json_line_is_found_among_library_chatter():
    code = "import json, sys; print('W0000 warning'); print(json.dumps({'rate': 1.5})); print('bye', file=sys.stderr)"
    assert measure.run_measured([sys.executable, "-c", code]).json_line() == {"rate": 1.5}
    with pytest.raises(RuntimeError, match="printed no JSON line"):
        measure.run_measured([sys.executable, "-c", "print('nothing')"]).json_line()


def test_children_import_this_checkout():
    r = measure.run_measured([sys.executable, "-c", "import vae_cli; print(vae_cli.__file__)"], env=measure.child_env())
    assert Path(r.output.strip()).parent == REPO / "vae_cli"


def test_machine_description_names_the_cpu_cores_and_versions():
    m = measure.machine()
    assert m["cores"] >= 1 and m["cpu"] and f"{m['cores']} cores" in m["cpu_description"]
    assert m["versions"]["numpy"] == np.__version__
    assert measure.versions("no-such-package-xyz") == {"no-such-package-xyz": None}
    load = measure.load_average()
    assert load is None or (len(load) == 3 and all(v >= 0 for v in load))


# ---------------------------------------------------------------- speed.py: work counting and report


def test_flop_count_matches_a_hand_count():
    from benchmarks.workloads import forward_flops, training_flops, tutorial_vae

    # mlp 16-8-2: encoder 16*8 + 2 heads 8*2, decoder 2*8 + 8*16, times 2 FLOPs per multiply-add
    mlp = Config(arch="mlp", hidden_dim=8, latent_dim=2)
    assert forward_flops(build_vae(mlp, (4, 4, 1)).vae) == 2 * (128 + 32 + 16 + 128)
    # conv, one stage of 2 filters on 4x4x1: conv 16*9*1*2, dense 8*8, heads 2*8*2, dense 2*8,
    # grid 8*8, upsample-conv counted at full resolution 16*9*2*2, output conv 16*9*2*1
    conv = Config(arch="conv", hidden_dim=8, latent_dim=2, conv_filters=(2,))
    expected = 2 * (288 + 64 + 32 + 16 + 64 + 576 + 288)
    assert forward_flops(build_vae(conv, (4, 4, 1)).vae) == expected
    assert training_flops(build_vae(conv, (4, 4, 1)).vae) == 3 * expected
    tutorial = tutorial_vae(conv, (4, 4, 1))  # same architecture the tutorial way, same count
    assert forward_flops(tutorial.encoder) + forward_flops(tutorial.decoder) == expected


def test_speed_help_is_instant_and_names_its_modes():
    code = ("import sys\nsys.argv = ['speed.py', '--help']\nimport runpy\n"
            "try: runpy.run_path('benchmarks/speed.py', run_name='__main__')\nexcept SystemExit: pass\n"
            "print('TF', 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "--quick" in out and "--json" in out and "--markdown" in out
    assert out.strip().endswith("TF False")


def _fake_results(manifold_speedup: float, arg_error_seconds: float, load: float = 0.5) -> dict:
    """A results dict with the shape run_benchmark returns, quick mode."""
    from benchmarks.speed import check_targets, flop_fractions

    def preset(train_rate, backend):
        return {"train_samples_per_second": train_rate, "epoch_samples_per_second": train_rate * 0.8,
                "train_flops_per_sample": 1_000_000, "backend": backend}

    res = {"machine": {"cpu_description": "test CPU, 2 cores", "cores": 2, "gpu": False,
                       "load_average_start": [load, 0, 0], "load_average_end": [0.7, 0, 0], "python": "3.11",
                       "versions": {"keras": "3.15.0", "torch": None}},
           "data": "4,500 digits (bundled), batch 128", "epochs": 4, "quick": True, "matmul_peak_gflops": 100.0,
           "mlp": preset(30_000, "jax"), "conv": preset(1_200, "tensorflow"),
           "manifold": {"ours_seconds": 0.5, "per_point_loop_seconds": 0.5 * manifold_speedup,
                        "per_point_calls_timed": 30, "speedup": manifold_speedup},
           "startup": {"arg_error_argparse": 0.1, "arg_error_config": arg_error_seconds}}
    res["flops"], res["targets"] = flop_fractions(res), check_targets(res)
    return res


def _rows(text: str) -> dict:
    return {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}


def test_speed_markdown_report_marks_each_target_and_says_what_ran():
    from benchmarks.speed_table import markdown_report

    text = markdown_report(_fake_results(manifold_speedup=200.0, arg_error_seconds=0.6),
                           "python benchmarks/speed.py --quick")
    assert text.startswith("**Quick run**") and "`python benchmarks/speed.py --quick`" in text
    assert "(Python 3.11, keras 3.15.0)" in text  # versions installed, none for a missing package
    rows = _rows(text)
    assert rows["30x30 manifold (decode + figure)"].endswith("| 200x | >= 150x | yes |")
    assert rows["`vae-train` argument error (argparse / Config)"].startswith("| `vae-train` argument error "
                                                                             "(argparse / Config) | 0.10 / 0.60 s |")
    assert rows["`vae-train` argument error (argparse / Config)"].endswith("| <= 0.5 s | **no** |")
    # samples/s x 1 MFLOP of a 100 GFLOP/s peak
    assert rows["`mlp`"] == "| `mlp` | jax | 1.0 | 30,000 | 24,000 | 30.0 | 30% |"
    assert rows["`conv`"] == "| `conv` | tensorflow | 1.0 | 1,200 | 960 | 1.2 | 1% |"
    assert "WARNING" not in text  # a quiet machine
    assert not any("Keras" in row or "PyTorch" in row for row in rows.values())  # no other program is timed here


def test_speed_table_warns_when_the_machine_was_busy():
    from benchmarks.speed_table import format_table

    text = format_table(_fake_results(manifold_speedup=120.0, arg_error_seconds=0.2, load=3.5))
    assert "WARNING: load average 3.5 on 2 cores" in text
    rows = _rows(text)
    assert rows["30x30 manifold (decode + figure)"].endswith("| 120x | >= 150x | **no** |")
    assert rows["`vae-train` argument error (argparse / Config)"].endswith("| <= 0.5 s | yes |")


@pytest.mark.parametrize("flag", ["--json", "--markdown"])
def test_speed_refuses_an_unwritable_output_before_measuring(tmp_path, capsys, flag):
    from benchmarks.speed import main as speed_main

    with pytest.raises(SystemExit) as e:
        speed_main(["--quick", flag, str(tmp_path / "missing" / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"{flag}: cannot write into {tmp_path / 'missing'}" in err


# ---------------------------------------------------------------- fair.py: the harness, its data and baselines


def _stand_in(label: str, role: str, seconds_per_epoch: float, parameters: int, exit_code: int = 0):
    """A workload that behaves like a training command: Keras-style epoch lines, a JSON line."""
    from benchmarks import fair

    code = ("import json, sys, time\nepochs = int(sys.argv[1])\nfor i in range(epochs):\n"
            "    print(f'Epoch {i + 1}/{epochs}', flush=True)\n"
            f"    time.sleep({seconds_per_epoch})\n"
            "    print('36/36 - 0s - loss: 1.0', flush=True)\n"
            f"print(json.dumps({{'parameters': {parameters}}}))\nsys.exit({exit_code})\n")
    return fair.Workload(label, role, lambda c: [sys.executable, "-c", code, str(c.epochs)])


def test_fair_harness_interleaves_rounds_and_reports_ratios_of_medians():
    import json
    import statistics

    from benchmarks import fair

    groups = {"toy": fair.Group("toy training, samples/s", "epochs", (1, 3), (1, 2)),
              "once": fair.Group("toy command, seconds", "once", rounds=1)}
    workloads = {"toy/ours": _stand_in("ours", "ours", 0.01, 100),
                 "toy/base": _stand_in("base", "baseline", 0.05, 100),
                 "toy/broken": _stand_in("broken", "baseline", 0.0, 100, exit_code=1),
                 "once/ours": _stand_in("ours once", "ours", 0.0, 100),
                 "once/base": _stand_in("other", "baseline", 0.0, 7)}
    order = []
    res = fair.benchmark(workloads, rounds=2, quick=False, command="test", groups=groups, log=order.append)
    json.dumps(res)  # everything is JSON

    # A B A B: round 1 runs every workload before round 2 starts; the capped group runs once
    assert [line.split()[3] for line in order] == ["toy/ours"] * 2 + ["toy/base"] * 2 + ["toy/broken"] * 2 + [
        "once/ours", "once/base"] + ["toy/ours"] * 2 + ["toy/base"] * 2 + ["toy/broken"] * 2
    w = res["workloads"]
    assert [len(w[k]["rounds"]) for k in workloads] == [2, 2, 2, 1, 1]
    for key in ("toy/ours", "toy/base"):
        rates = []
        for r in w[key]["rounds"]:
            short, long = r["runs"]
            assert (short["epochs"], long["epochs"]) == (1, 3)
            extra = long["seconds"] - short["seconds"]
            assert r["samples_per_second"] == (4500 * 2 / extra if extra > 0 else None)
            rates.append(r["samples_per_second"])
            assert 0 <= long["startup_seconds"] <= long["seconds"] and 0 <= long["wind_down_seconds"] <= long["seconds"]
        assert w[key]["median"]["samples_per_second"] == statistics.median(x for x in rates if x is not None)
    ratios = {(c["ours"], c["baseline"]): c for c in res["comparisons"]}
    assert ratios[("toy/ours", "toy/base")]["speed_up"] == pytest.approx(
        w["toy/ours"]["median"]["samples_per_second"] / w["toy/base"]["median"]["samples_per_second"])
    assert ratios[("toy/ours", "toy/broken")]["speed_up"] is None
    assert w["toy/broken"]["median"]["rounds_failed"] == 2 and "error" in w["toy/broken"]["rounds"][0]["runs"][0]
    assert ratios[("once/ours", "once/base")]["speed_up"] == pytest.approx(
        w["once/base"]["median"]["seconds"] / w["once/ours"]["median"]["seconds"])
    assert res["architecture"] == {"toy": {"parameters": [100], "same": True},
                                   "once": {"parameters": [7, 100], "same": False}}

    text = fair.markdown(res)
    assert measure.cpu_description() in text and "MISMATCH in once" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert any(line.startswith("| toy training, samples/s | ours |") for line in rows)  # the group's title, once
    base_row = next(line for line in rows if line.startswith("|  | base |"))
    assert base_row.endswith(f"| {ratios[('toy/ours', 'toy/base')]['speed_up']:.2f}x |")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_fair_quick_runs_real_workloads_end_to_end(tmp_path):
    """The real commands, one round of 1 and 2 epochs: vae-train against the PyTorch MLP, and --help."""
    import json

    out = tmp_path / "fair.json"
    run = subprocess.run([sys.executable, "benchmarks/fair.py", "--quick", "--only", "mlp400/vae-train,mlp400/torch,help", "--json", str(out)],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    res = json.loads(out.read_text())
    assert set(res["workloads"]) == {"mlp400/vae-train", "mlp400/torch", "help/vae-train"}
    assert all(w["median"]["rounds_failed"] == 0 for w in res["workloads"].values())
    # 784-400-20 by hand: 784*400+400 + 2*(400*20+20) + 20*400+400 + 400*784+784
    assert res["architecture"]["mlp400"] == {"parameters": [652_824], "same": True}
    (comparison,) = res["comparisons"]
    ours, torch = (res["workloads"][k]["median"]["samples_per_second"] for k in ("mlp400/vae-train", "mlp400/torch"))
    assert comparison["speed_up"] == (None if None in (ours, torch) else pytest.approx(ours / torch))
    assert "| workload | implementation | median | vae-cli speed-up |" in run.stdout
    assert res["machine"]["cpu"] in run.stdout
    assert res["commands"]["help/vae-train"].endswith("-m vae_cli.cli.train --help")


def test_fair_refuses_an_unknown_workload_before_measuring(tmp_path):
    argv = [sys.executable, "benchmarks/fair.py", "--only", "mlp,gpu", "--json", str(tmp_path / "x.json")]
    run = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2 and "--only: unknown gpu" in run.stderr and not (tmp_path / "x.json").exists()


def test_shifted_digits_are_the_bundled_ones_then_shifted_copies(tmp_path):
    from benchmarks import digits

    x, y = digits.bundled()
    note = digits.shifted_digits_npz(tmp_path / "d.npz", 6_000, 1_000)
    with np.load(tmp_path / "d.npz", allow_pickle=False) as d:
        assert d["x_train"].shape == (6_000, 28, 28) and d["x_test"].shape == (1_000, 28, 28)
        assert d["x_train"].dtype == np.uint8 and d["y_train"].dtype == np.int64
        np.testing.assert_array_equal(d["x_train"][:5000], x)
        np.testing.assert_array_equal(d["x_train"][5000:], np.roll(x[:1000], digits.SHIFTS[1], axis=(1, 2)))
        np.testing.assert_array_equal(d["x_test"], np.roll(x[1000:2000], digits.SHIFTS[1], axis=(1, 2)))
        np.testing.assert_array_equal(d["y_test"], y[1000:2000])
    assert note.startswith("6,000 + 1,000 digits")
    with pytest.raises(ValueError, match="at most 125,000 distinct shifted digits"):
        digits.shifted_digits_npz(tmp_path / "big.npz", 130_000, 1)


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_conv_baselines_train_the_conv_presets_architecture(framework):
    if framework == "torch" and importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    from vae_cli.config import resolve

    expected = sum(int(np.prod(w.shape)) for w in build_vae(resolve("conv", {}), (28, 28, 1)).vae.trainable_weights)
    r = measure.run_measured([sys.executable, "benchmarks/baselines.py", framework, "--arch", "conv", "--epochs", "0"],
                             env=measure.child_env(KERAS_BACKEND="tensorflow"), cwd=REPO)
    assert r.json_line()["parameters"] == expected
