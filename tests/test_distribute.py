"""--strategy: TF_CONFIG checks, the global batch, one step on 2 replicas equal to one step on one
device, and a real two-worker MultiWorkerMirroredStrategy run of vae-train on 127.0.0.1."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from vae_cli.cli.train import main
from vae_cli.distribute import Role, check_batch_size, read_role, weights_digest
from vae_cli.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300  # a hung collective must fail the test, never hang CI


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **extra}
    env.pop("TF_CONFIG", None)
    return {**env, **extra}


def _tf_config(ports, index) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# ---------------------------------------------------------------- TF_CONFIG and batch checks


def test_roles_from_tf_config():
    def env(i, kind="worker", cluster=None):
        return {"TF_CONFIG": json.dumps({"cluster": cluster or {"worker": ["h1:1", "h2:2"]},
                                         "task": {"type": kind, "index": i}})}

    assert read_role("multiworker", env(0)) == Role("worker", 0, 2, False)
    assert read_role("multiworker", env(0)).is_chief and not read_role("multiworker", env(1)).is_chief
    with_chief = {"chief": ["c:1"], "worker": ["h1:1"]}
    assert read_role("multiworker", env(0, "chief", with_chief)).is_chief
    assert not read_role("multiworker", env(0, "worker", with_chief)).is_chief
    assert read_role("default", {}) == Role() and Role().is_chief


@pytest.mark.parametrize("tf_config, message", [
    (None, "TF_CONFIG is not set; set it on every worker"),
    ("{'cluster': 1}", "TF_CONFIG: invalid JSON at line 1, column 2"),
    ('{"cluster": {"worker": ["h:1"]}}', 'TF_CONFIG: expected {"cluster"'),
    ('{"cluster": {"worker": ["h:1"], "ps": ["p:1"]}, "task": {"type": "worker"}}', "job(s) ps are not supported"),
    ('{"cluster": {"worker": ["h1"]}, "task": {"type": "worker"}}', '"host:port" addresses'),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "evaluator", "index": 0}}', "task must be"),
    ('{"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 2}}', "task index 2 is outside"),
])
def test_bad_tf_config_is_a_usage_error(tf_config, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        read_role("multiworker", {} if tf_config is None else {"TF_CONFIG": tf_config})


def test_tf_config_without_multiworker_warns_that_the_process_trains_alone():
    warnings = []
    assert read_role("auto", {"TF_CONFIG": "{}"}, warn=warnings.append) == Role()
    assert len(warnings) == 1 and "--strategy multiworker" in warnings[0]


def test_batch_size_must_split_evenly_over_the_replicas():
    check_batch_size(128, SimpleNamespace(num_replicas_in_sync=4), "mirrored")
    with pytest.raises(UsageError, match="--batch-size 130 does not split evenly over the 4 replicas of "
                                         "--strategy mirrored.*multiple of 4, e.g. 132"):
        check_batch_size(130, SimpleNamespace(num_replicas_in_sync=4), "mirrored")


def test_multiworker_without_tf_config_exits_2_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert main(["--strategy", "multiworker", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "TF_CONFIG is not set" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- one step, 1 device vs 2 replicas


def test_one_step_on_two_replicas_equals_one_step_on_one_device(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "mirrored_step.py")],
                          capture_output=True, text=True, timeout=TIMEOUT_S, env=_env(), cwd=tmp_path,
                          check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    results = json.loads(lines[0][len("RESULTS "):])
    single = results["single"]
    assert single["replicas"] == 1 and single["largest_update"] > 1e-3  # the step really moved weights
    for name in ("mirrored", "custom_loop"):
        other = results[name]
        assert other["replicas"] == 2
        assert other["loss"] == pytest.approx(single["loss"], rel=1e-6)
        for w_one, w_two in zip(single["weights"], other["weights"]):
            np.testing.assert_allclose(w_two, w_one, rtol=0, atol=1e-6)  # 1000x below the step size


def test_vae_train_mirrored_over_two_replicas_trains_and_records_them(tmp_path):
    """The real command under --strategy mirrored on 2 logical CPUs (2 GPUs' code path): it trains,
    one step per compiled call (Keras's several-steps loop fails over a distributed dataset)."""
    code = ("import sys, tensorflow as tf\n"
            "cpu = tf.config.list_physical_devices('CPU')[0]\n"
            "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
            "from vae_cli.cli.train import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    args = ["--dataset", "mnist-5k", "--arch", "mlp", "--hidden-dim", "16", "--latent-dim", "2",
            "--strategy", "mirrored", "--epochs", "1", "--out", str(tmp_path / "runs")]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=TIMEOUT_S, env={**_env(), "KERAS_BACKEND": "tensorflow"}, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["strategy"] == {"name": "mirrored", "replicas": 2}
    assert metrics["speed"]["steps_per_execution"] == 1 and metrics["status"] == "completed"


# ---------------------------------------------------------------- a real two-worker cluster


@pytest.fixture(scope="module")
def unlabelled_pngs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    for i in range(27):  # odd on purpose: the workers' shards and the last batch are uneven
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def test_two_workers_train_one_model_and_only_the_chief_writes(unlabelled_pngs, tmp_path):
    out = tmp_path / "runs"
    ports = _free_ports(2)
    args = [sys.executable, "-m", "vae_cli.cli.train", "--strategy", "multiworker", "--dataset",
            f"folder:{unlabelled_pngs}", "--arch", "mlp", "--hidden-dim", "8", "--epochs", "2",
            "--batch-size", "6", "--kl-warmup-epochs", "1", "--out", str(out), "--name", "cluster"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                              env=_env(TF_CONFIG=_tf_config(ports, i))) for i in range(2)]
    try:
        outputs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stdout[-2000:] + stderr[-3000:]
        assert "unhealthy" not in stderr  # no worker left while another still needed it
    digests = [re.findall(r"final weights sha256 ([0-9a-f]{64})", stdout) for stdout, _ in outputs]
    assert len(digests[0]) == 1 and digests[0] == digests[1]

    (run,) = out.iterdir()  # exactly one run directory, written by worker 0
    assert run.name.endswith("-cluster")
    from vae_cli.run import load_run

    assert weights_digest(load_run(run).vae) == digests[0][0]
    rows = (run / "history.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["strategy"] == {"name": "multiworker", "replicas": 2}
    assert json.loads((run / "config.json").read_text())["num_classes"] is None

    worker_log = outputs[1][0]
    assert "not the chief" in worker_log and "run directory:" not in worker_log
    (temp,) = re.findall(r"files go to (\S+), removed at the end", worker_log)
    assert not Path(temp).exists()


# ---------------------------------------------------------------- conditional inputs in the custom loop


def test_custom_loop_trains_a_conditional_vae_on_dict_batches():
    import tensorflow as tf

    from vae_cli import distribute
    from vae_cli.config import Config
    from vae_cli.data import ConditionalBatches, Dataset
    from vae_cli.models import build_vae

    x = np.random.default_rng(0).random((24, 6, 6, 1), dtype=np.float32)
    y = np.arange(24) % 3
    data = ConditionalBatches(Dataset(x, y, x[:6], y[:6], "fixed", "test"), 3)
    models = build_vae(Config(arch="mlp", hidden_dim=8, conditional=True), (6, 6, 1), 3)
    models.vae.compile(optimizer="adam")
    history = distribute.fit_custom_loop(models.vae, tf.distribute.get_strategy(), data, batch_size=8,
                                         seed=0, epochs=2, callbacks=[], verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["val_loss"]).all()
    assert history.history["loss"][1] < history.history["loss"][0]
