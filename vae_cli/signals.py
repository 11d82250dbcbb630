"""SIGINT/SIGTERM during training: stop at a safe point, keep every finished epoch.

While model.fit runs (`StopSignals.deferred`) the first signal only records a stop request;
the StopAtSafePoint callback (callbacks.py) acts on it after the current compiled call of
steps_per_execution batches, so the unfinished epoch is dropped, metrics.json says
"interrupted" and the command exits 130/143. Elsewhere, or on a second signal, Interrupted is
raised at once. No TensorFlow here: vae-train installs the handlers before the slow imports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator

from .errors import Interrupted

SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class StopSignals:
    """SIGINT/SIGTERM handling for one training run (a no-op outside the main thread).

    Inside `deferred()` (model.fit) the first signal only records a stop request that the
    StopAtSafePoint callback acts on at the end of the batch; elsewhere, or on a second signal,
    Interrupted is raised at once. Previous handlers are restored on exit.
    """

    def __init__(self):
        self.requested: int | None = None
        self._deferring = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNAL_NAMES:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self._deferring and self.requested is None:
            self.requested = signum
            # os.write, not print: a handler may interrupt a print to the same stream
            os.write(2, f"\n{SIGNAL_NAMES[signum]} received: stopping after this batch "
                        "(send it again to stop at once)\n".encode())
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def check(self) -> None:
        if self.requested is not None:
            raise Interrupted(self.requested)
