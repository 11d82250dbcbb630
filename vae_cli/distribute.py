"""Many devices for vae-train: choose the strategy, know this process's role, and train where
Keras `fit` cannot.

Strategies (`--strategy`):
  auto         mirrored when more than one GPU is visible, else default
  default      one device (the engine places the work on the GPU when there is one)
  mirrored     TensorFlow: MirroredStrategy over all local GPUs; without a GPU, over the logical
               CPU devices (tests split the CPU with tf.config.set_logical_device_configuration).
               JAX: keras.distribution.DataParallel over the local devices (tests split the CPU
               with XLA_FLAGS=--xla_force_host_platform_device_count=2)
  multiworker  MultiWorkerMirroredStrategy over the cluster described by TF_CONFIG (TensorFlow only)

The trainer treats the strategy as opaque and asks the functions below about it: a
tf.distribute.Strategy on TensorFlow; on JAX None (one device) or a DataParallel distribution.

--batch-size is the global batch: every step uses batch_size examples, split evenly over the
replicas, and the gradients are all-reduced so one step equals one step on one device.

Keras 3 `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so
`fit_custom_loop` runs TensorFlow's documented custom training loop: per-worker input pipelines
from `distribute_datasets_from_function`, a `tf.function` step run with `strategy.run`, losses
scaled by the global batch, gradients and metrics all-reduced by the strategy itself. It drives
the same Keras callbacks as `fit`, so the run directory is written the same way.

Only the chief (task "chief", else worker 0) writes the run directory; the other workers run the
same code against a temporary folder they delete, because every worker must take part in every
collective operation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster":{"worker":["host1:12345","host2:12345"]},'
                     '"task":{"type":"worker","index":0}}\'')


@dataclass(frozen=True)
class Role:
    """This process's place in the cluster; a single process is the chief of a cluster of one."""

    task_type: str = "chief"
    index: int = 0
    workers: int = 1
    has_chief_task: bool = True

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (self.index == 0 and not self.has_chief_task)

    def describe(self) -> str:
        return f"{self.task_type} {self.index} of {self.workers} workers"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def read_role(strategy: str, environ=os.environ, warn=_stderr) -> Role:
    """Parse TF_CONFIG (without importing TensorFlow) so a bad cluster fails before any work."""
    raw = environ.get("TF_CONFIG", "")
    if strategy != "multiworker":
        if raw.strip():
            warn(f"warning: TF_CONFIG is set but --strategy is {strategy}, so this process trains alone; "
                 "use --strategy multiworker to train with the cluster")
        return Role()
    if not raw.strip():
        raise UsageError(f"--strategy multiworker: TF_CONFIG is not set; set it on every worker, e.g. "
                         f"{TF_CONFIG_EXAMPLE} (index 1 on the second)")
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UsageError(f"TF_CONFIG: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    return _role_from(tf_config)


def _role_from(tf_config) -> Role:
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    task = tf_config.get("task") if isinstance(tf_config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise UsageError(f'TF_CONFIG: expected {{"cluster": {{...}}, "task": {{...}}}}, e.g. {TF_CONFIG_EXAMPLE}')
    unknown = sorted(set(cluster) - {"chief", "worker"})
    if unknown:
        raise UsageError(f"TF_CONFIG: cluster job(s) {', '.join(unknown)} are not supported; "
                         "--strategy multiworker uses 'worker' (and optionally one 'chief')")
    jobs = {name: cluster.get(name, []) for name in ("chief", "worker")}
    if (any(not isinstance(v, list) or not all(isinstance(a, str) and ":" in a for a in v) for v in jobs.values())
            or len(jobs["chief"]) > 1 or not jobs["chief"] + jobs["worker"]):
        raise UsageError('TF_CONFIG: cluster "worker" must be a list of "host:port" addresses '
                         '(and "chief", when given, a list of one)')
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in jobs or isinstance(index, bool) or not isinstance(index, int):
        raise UsageError(f"TF_CONFIG: task must be {{\"type\": \"worker\" or \"chief\", \"index\": N}}, got {task}")
    if not 0 <= index < len(jobs[kind]):
        raise UsageError(f"TF_CONFIG: task index {index} is outside the {len(jobs[kind])} '{kind}' "
                         "address(es) of the cluster")
    return Role(kind, index, len(jobs["chief"]) + len(jobs["worker"]), bool(jobs["chief"]))


def _on_jax() -> bool:
    from .backend import current

    return current() == "jax"


def make_strategy(name: str, log=print):
    """Create the strategy; must come before any other TensorFlow work in the process."""
    if _on_jax():
        return _jax_distribution(name, log)
    import tensorflow as tf

    if name == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        log(f"strategy: multiworker, {strategy.num_replicas_in_sync} replicas "
            f"({strategy.cluster_resolver.task_type} {strategy.cluster_resolver.task_id})")
        return strategy
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        devices = gpus[:1] or tf.config.list_logical_devices("CPU")[:1]
        log(f"strategy: default (one device: {devices[0].name})")
        return tf.distribute.get_strategy()
    devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    log(f"strategy: mirrored over {len(devices)} device(s): {', '.join(devices)}"
        + ("" if gpus else " (no GPU visible)"))
    return strategy


def _jax_distribution(name: str, log):
    """--strategy on JAX: None for one device, else a DataParallel over the local devices."""
    import jax
    import keras

    if name == "multiworker":
        raise UsageError(MULTIWORKER_NEEDS_TENSORFLOW)
    devices = jax.local_devices()
    if name == "auto":
        name = "mirrored" if sum(d.platform == "gpu" for d in devices) > 1 else "default"
    if name == "default":
        log(f"strategy: default (one device: {devices[0]})")
        return None
    log(f"strategy: mirrored over {len(devices)} device(s): {', '.join(map(str, devices))}"
        + ("" if any(d.platform == "gpu" for d in devices) else " (no GPU visible)"))
    return keras.distribution.DataParallel(devices=devices)


MULTIWORKER_NEEDS_TENSORFLOW = ("--strategy multiworker runs on tf.distribute, which the JAX engine does not "
                                "have; add --backend tensorflow")


def default_strategy():
    """The one-device strategy: TensorFlow's default strategy, or None on JAX."""
    if _on_jax():
        return None
    import tensorflow as tf

    return tf.distribute.get_strategy()


def scope(strategy):
    """The context in which variables are created and fit runs, so they are distributed."""
    if strategy is None:
        return contextlib.nullcontext()
    return strategy.scope()


def is_default(strategy) -> bool:
    """True for the one-device strategy (call outside any strategy scope)."""
    if _on_jax():
        return strategy is None
    import tensorflow as tf

    return strategy is tf.distribute.get_strategy()


def replicas(strategy) -> int:
    """Devices the global batch is split over."""
    if _on_jax():
        return 1 if strategy is None else int(strategy.device_mesh.devices.size)
    return strategy.num_replicas_in_sync


def is_chief(strategy) -> bool:
    """Whether this process writes the run directory (on JAX there is only one process)."""
    return _on_jax() or strategy.extended.should_checkpoint


def strategy_name(strategy) -> str:
    """The --strategy value that gives this strategy."""
    if _on_jax():
        return "default" if strategy is None else "mirrored"
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multiworker"
    return "mirrored" if isinstance(strategy, tf.distribute.MirroredStrategy) else "default"


def needs_custom_loop(strategy) -> bool:
    if _on_jax():
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def check_batch_size(batch_size: int, strategy, name: str) -> None:
    replicas_ = replicas(strategy)
    if batch_size % replicas_:
        fix = replicas_ * -(-batch_size // replicas_)
        raise UsageError(f"--batch-size {batch_size} does not split evenly over the {replicas_} replicas of "
                         f"--strategy {name}; it is the global batch, so use a multiple of {replicas_}, "
                         f"e.g. {fix}")


@contextlib.contextmanager
def run_directory(config, role: Role, log=print):
    """The chief's new run directory, or for another worker a temporary one removed afterwards."""
    from .run import RunDir

    if role.is_chief:
        yield RunDir.create(config.out, config.run_name)
        return
    path = Path(tempfile.mkdtemp(prefix=f"vae-cli-{role.task_type}{role.index}-"))
    log(f"{role.describe()}: not the chief, so this worker's files go to {path}, removed at the end")
    try:
        yield RunDir(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def single_device_copy(models, build, strategy, log=print):
    """Plain copies of the trained models (from `build()`) for saving, figures and evaluation:
    predict() on the strategy's own models would take part in its collective operations."""
    copies = build()
    copies.vae.set_weights(models.vae.get_weights())
    if needs_custom_loop(strategy):
        log(f"final weights sha256 {weights_digest(copies.vae)} (equal on every worker)")
    return copies


def wait_for_all(strategy) -> None:
    """A barrier across workers (one tiny all-reduce by the strategy): a worker that finished
    first stays until the chief has written the run directory, so the chief never sees it leave
    (TensorFlow logs a departed worker as crashed)."""
    if not needs_custom_loop(strategy):
        return
    import tensorflow as tf

    def one():
        return tf.constant(1.0)

    @tf.function
    def barrier():
        return strategy.reduce("SUM", strategy.run(one), axis=None)

    barrier()


def weights_digest(model) -> str:
    """sha256 of every weight, in order: equal digests mean bit-identical models."""
    import numpy as np

    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w, dtype=np.float32).tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------- the custom training loop


def _examples(x):
    """Examples in a batch: images, or a conditional VAE's {"x": images, "label": one-hot}."""
    import tensorflow as tf

    return tf.shape(tf.nest.flatten(x)[0])[0]


def _replica_steps(model, strategy, loss_tracker, global_batch: int):
    """tf.functions running one training step and one validation batch on every replica."""
    import tensorflow as tf

    def train_on_replica(x):
        with tf.GradientTape() as tape:
            terms = model(x, training=True)
            loss = tf.add_n(model.losses)  # the add_loss terms: means over this replica's examples
            # Weighted by this replica's share of the global batch, the gradients the optimizer
            # all-reduces (SUM) add up to the gradient of the global-batch mean.
            scaled = loss * tf.cast(_examples(x), loss.dtype) / global_batch
        grads = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        loss_tracker.update_state(loss, sample_weight=_examples(x))
        model.update_terms(terms)

    def validate_on_replica(x):
        terms = model(x, training=False)
        model.update_terms(terms)
        n = _examples(x)  # the last batch may leave a replica with no examples
        loss = tf.where(n > 0, tf.add_n(model.losses), 0.0)
        loss_tracker.update_state(loss, sample_weight=n)

    @tf.function
    def train_step(iterator):
        strategy.run(train_on_replica, args=(next(iterator),))

    @tf.function(reduce_retracing=True)  # the last batch is smaller
    def validation_step(batch):
        strategy.run(validate_on_replica, args=(batch,))

    return train_step, validation_step


def fit_custom_loop(model, strategy, data, *, batch_size: int, seed: int, epochs: int, callbacks,
                    verbose: int = 2):
    """Train `model` (built and compiled under strategy.scope()) like `model.fit`.

    An epoch is n_train // batch_size full global batches from an endlessly reshuffled stream
    (every worker must run the same number of steps); validation sees every example once.
    Returns the keras History.
    """
    import keras

    def pipeline(make):
        return strategy.distribute_datasets_from_function(lambda ctx: make(
            ctx.get_per_replica_batch_size(batch_size), shard=(ctx.num_input_pipelines, ctx.input_pipeline_id)))

    train = iter(pipeline(lambda b, shard: data.train_batches(b, seed=seed, shard=shard, repeat=True)))
    val = pipeline(lambda b, shard: data.val_batches(b, shard=shard))
    with strategy.scope():  # slot variables made inside the first traced step break MirroredStrategy
        model.optimizer.build(model.trainable_variables)
    metrics = model.metrics  # "loss" from compile(), then the model's "recon" and "kl"
    loss_tracker = next(m for m in metrics if m.name == "loss")
    train_step, validation_step = _replica_steps(model, strategy, loss_tracker, batch_size)
    steps = max(1, data.n_train // batch_size)
    history = keras.callbacks.History()
    hooks = keras.callbacks.CallbackList([*callbacks, history], add_progbar=verbose != 0, model=model,
                                         verbose=verbose, epochs=epochs, steps=steps)
    model.stop_training, logs = False, {}
    hooks.on_train_begin()
    for epoch in range(epochs):
        hooks.on_epoch_begin(epoch)
        logs = _train_epoch(model, train, train_step, steps, metrics, loss_tracker, hooks)
        _reset(metrics)
        for batch in val:
            validation_step(batch)
        logs.update({f"val_{k}": v for k, v in _results(metrics).items()})
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end(logs)
    return history


def _train_epoch(model, iterator, train_step, steps, metrics, loss_tracker, hooks) -> dict:
    _reset(metrics)
    for step in range(steps):
        hooks.on_train_batch_begin(step)
        train_step(iterator)
        # Only the loss per step: every metric read is an all-reduce across workers.
        hooks.on_train_batch_end(step, {"loss": float(loss_tracker.result())})
        if model.stop_training:
            break
    return _results(metrics)


def _reset(metrics) -> None:
    for m in metrics:
        m.reset_state()


def _results(metrics) -> dict:
    logs = {}
    for m in metrics:
        value = m.result()
        logs.update({k: float(v) for k, v in value.items()} if isinstance(value, dict) else {m.name: float(value)})
    return logs
