"""A Config trained into a run directory, the whole way: what vae-train, the benchmarks and the
quality script all call.

Everything that can be refused is checked before the slow work: the dataset spec, the output
folder and the cluster role without TensorFlow; the batch split and the data itself before a
run directory exists. The Keras engine is chosen (backend.py) and set before Keras is imported.
The run directory is locked while it is trained (run.run_lock), and under --strategy
multiworker every worker waits for the others before it returns.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import backend
from .config import Config
from .data import check_dataset_spec, load_dataset
from .distribute import (MULTIWORKER_NEEDS_TENSORFLOW, check_batch_size, make_strategy, read_role, run_directory,
                         wait_for_all)
from .errors import UsageError
from .resume import ResumePlan, check_same_data, plan_resume
from .run import METRICS_FILE, check_output_root, read_run_config, run_lock, write_json
from .signals import StopSignals

if TYPE_CHECKING:
    from .trainer import TrainResult

# A run below these learned (almost) nothing, and says so (learned_little).
MIN_STEPS = 300  # optimizer steps; see learned_little
COLLAPSED_KL = 0.1  # nats per image: the code tells the decoder almost nothing about the image


def train_new_run(config: Config, *, log=print, callbacks=()) -> TrainResult:
    """Train `config` into a new run directory under config.out and return its history, metrics
    and path (on a worker other than the chief: no metrics and no path).

    `log` receives the progress lines vae-train prints; `callbacks` are extra Keras callbacks,
    run after the run's own. SIGINT/SIGTERM raise errors.Interrupted, bad input UsageError, a
    failed run TrainingFailed (train.train says what each leaves behind)."""
    with StopSignals():  # SIGTERM while loading data: one line and exit 143, like Ctrl-C
        return _train(config, None, log, callbacks)


def resume_run(run_path: str, preset: str | None = None, flags: dict[str, Any] | None = None, *,
               log=print, callbacks=()) -> TrainResult:
    """Continue the run directory `run_path` from its last finished epoch. `preset` and `flags`
    are the settings the user gave (as Config field names); only epochs and strategy may differ
    from the run's own (resume.plan_resume)."""
    with StopSignals(), run_lock(run_path):  # the lock first, so a run in use is refused at once
        return _train(None, plan_resume(run_path, preset, dict(flags or {})), log, callbacks)


@contextlib.contextmanager
def _run_directory(config, role, plan, log):
    """The resumed run (already locked), or a new one, locked while it is trained."""
    if plan:
        yield plan.run
        return
    with run_directory(config, role, log=log) as run, run_lock(run.path):
        yield run


def choose_engine(config: Config) -> backend.Engine:
    """The engine `config` trains on, set for the Keras import that follows; multiworker needs
    tf.distribute, so auto picks TensorFlow for it and an explicit jax is refused."""
    if config.strategy == "multiworker":
        if config.backend == "jax":
            raise UsageError(MULTIWORKER_NEEDS_TENSORFLOW)
        engine = (backend.Engine("tensorflow", "auto: --strategy multiworker runs on tf.distribute")
                  if config.backend == "auto" else backend.choose(config.backend, config.arch, gpu=False))
    else:
        engine = backend.choose(config.backend, config.arch, gpu=backend.gpu_visible())
    backend.activate(engine)
    return engine


def set_engine(config: Config | None = None, resume: str | None = None) -> backend.Engine:
    """Choose and set the engine of a new run's `config`, or of the run directory `resume`
    (its own), before anything imports Keras: vae-train calls this first, so that its start-up
    (cli.common.quiet_tensorflow) imports Keras on the engine the run trains on."""
    if resume is not None:
        config = read_run_config(Path(resume).expanduser())[0]
    return choose_engine(config)


def _train(config: Config | None, plan: ResumePlan | None, log, callbacks) -> TrainResult:
    config = plan.config if plan else config
    spec = plan.data_spec if plan else config.dataset  # a resumed run's data: where it is now
    check_dataset_spec(spec)
    role = read_role(config.strategy)
    if role.is_chief and not plan:
        check_output_root(config.out)
    engine = choose_engine(config)

    from .trainer import check_data, train  # keras (and TensorFlow): only after the checks above

    strategy = make_strategy(config.strategy, log=log)  # first: MultiWorkerMirroredStrategy precedes other TF work
    check_batch_size(config.batch_size, strategy, config.strategy)
    data = load_dataset(spec, validation_split=config.validation_split, seed=config.seed,
                        image_size=config.image_hw, channels=config.channels)
    check_data(config, data)
    n_test = data.info.get("n_test") or 0
    test = f" / {n_test:,} test (never trained or validated on; vae-eval's default)" if n_test else ""
    log(f"data: {data.source}; {data.n_train:,} train / {data.n_val:,} "
        f"{data.val_split}{test}, images {'x'.join(map(str, data.input_shape))}")
    if plan:
        check_same_data(plan, data)
    with _run_directory(config, role, plan, log) as run:
        if role.is_chief:
            log(f"run directory: {run.path}")
        result = train(config, data, run, log=log, strategy=strategy, resume_run=plan is not None,
                       callbacks=callbacks, engine=engine)
        if result.metrics:  # the chief: say so when the model learned (almost) nothing
            warning = learned_little(config, data.n_train, result.metrics)
            result.metrics.pop("warnings", None)  # a resumed run's earlier verdict is replaced
            if warning:
                log(f"warning: {warning}")
                result.metrics["warnings"] = [warning]
            write_json(run / METRICS_FILE, result.metrics)
    wait_for_all(strategy)
    if not role.is_chief:
        log(f"{role.describe()}: finished; the chief wrote the run directory")
    return result


def learned_little(config: Config, n_train: int, metrics: dict) -> str | None:
    """One line when a finished run learned (almost) nothing, with what to try; None otherwise.

    From metrics.json: no active latent unit or a held-out KL near zero (the posterior collapsed
    to the prior: the decoder draws the same average image whatever z is), or fewer than
    MIN_STEPS optimizer steps in all. Measured on this machine with the default conv model:
    1,797 8x8 digits ended with KL <= 0.03 nats after 65, 130 and 260 steps and with 1.87 nats,
    both units active, after 520; the 5,000 bundled digits reached -ELBO 183.0 after 108 steps
    and 163.5 after 360.
    """
    evaluation = metrics.get("eval") or {}
    epochs = metrics.get("epochs") or 0
    batches = metrics.get("steps_per_epoch") or -(-n_train // config.batch_size)
    steps, active, kl = epochs * batches, evaluation.get("active_units"), evaluation.get("kl")
    collapsed = []
    if active == 0:
        collapsed.append(f"0 of {config.latent_dim} latent units are active")
    if isinstance(kl, (int, float)) and kl < COLLAPSED_KL:
        collapsed.append(f"the KL is {kl:.2f} nats (the latent code says almost nothing about the image)")
    few_steps = steps < MIN_STEPS
    if not collapsed and not few_steps:
        return None
    fixes = []
    if few_steps:
        fixes.append(f"more epochs (--epochs {-(-MIN_STEPS // batches)} for {MIN_STEPS} steps)")
        if batches < 20:
            fixes.append(f"a smaller --batch-size than {config.batch_size}")
    if collapsed:
        if not few_steps:
            fixes.append("more epochs")
        if config.latent_dim > 2:
            fixes.append(f"a smaller --latent-dim than {config.latent_dim}")
        if not config.kl_warmup_epochs:
            fixes.append(f"KL warm-up (--kl-warmup-epochs {max(1, min(10, epochs))})")
    steps_text = f"{steps:,} optimizer steps ({epochs} epoch{'s' * (epochs != 1)} of {batches:,} batches)"
    if collapsed:
        what = "; ".join(collapsed + ([f"it took only {steps_text}"] if few_steps else []))
        head = f"this run learned little: {what}"
    else:
        head = f"this run took only {steps_text}, likely too few to learn much"
    return f"{head}; try {fixes[0] if len(fixes) == 1 else ', '.join(fixes[:-1]) + ' or ' + fixes[-1]}"
