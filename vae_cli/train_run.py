"""A Config trained into a run directory, the whole way: what vae-train, the benchmarks and the
quality script all call.

Everything that can be refused is checked before the slow work: the dataset spec, the output
folder and the cluster role without TensorFlow; the batch split and the data itself before a
run directory exists. The run directory is locked while it is trained (run.run_lock), and under
--strategy multiworker every worker waits for the others before it returns.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from .config import Config
from .data import check_dataset_spec, load_dataset
from .distribute import check_batch_size, make_strategy, read_role, run_directory, wait_for_all
from .resume import ResumePlan, check_same_data, plan_resume
from .run import check_output_root, run_lock
from .signals import StopSignals

if TYPE_CHECKING:
    from .train import TrainResult


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


def _train(config: Config | None, plan: ResumePlan | None, log, callbacks) -> TrainResult:
    config = plan.config if plan else config
    check_dataset_spec(config.dataset)
    role = read_role(config.strategy)
    if role.is_chief and not plan:
        check_output_root(config.out)

    from .train import check_data, train  # keras and TensorFlow: only after the checks above

    strategy = make_strategy(config.strategy, log=log)  # first: MultiWorkerMirroredStrategy precedes other TF work
    check_batch_size(config.batch_size, strategy, config.strategy)
    data = load_dataset(config.dataset, validation_split=config.validation_split, seed=config.seed,
                        image_size=config.image_hw, channels=config.channels)
    check_data(config, data)
    log(f"data: {data.source}; {data.n_train:,} train / {data.n_val:,} "
        f"{data.val_split}, images {'x'.join(map(str, data.input_shape))}")
    if plan:
        check_same_data(plan, data.source, data.input_shape)
    with _run_directory(config, role, plan, log) as run:
        if role.is_chief:
            log(f"run directory: {run.path}")
        result = train(config, data, run, log=log, strategy=strategy, resume_run=plan is not None,
                       callbacks=callbacks)
    wait_for_all(strategy)
    if not role.is_chief:
        log(f"{role.describe()}: finished; the chief wrote the run directory")
    return result
