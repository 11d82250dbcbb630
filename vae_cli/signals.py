"""SIGINT/SIGTERM during training: stop at a safe point, keep every finished epoch.

While model.fit runs (`StopSignals.deferred`) the first signal only records a stop request;
the StopAtSafePoint callback (callbacks.py) acts on it after the current compiled call of
steps_per_execution batches, so the unfinished epoch is dropped, metrics.json says
"interrupted" and the command exits 130/143. Elsewhere, or on a second signal, Interrupted is
raised at once. No TensorFlow here: vae-train installs the handlers before the slow imports.

A server (vae-explore) instead holds the two signals in the process's queue (`queued_stops`) and
takes them from its own loop (`take_stop`): a stop then depends neither on which thread the kernel
hands a signal to nor on the mask and handlers the process inherited.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator

from .errors import Interrupted

SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
_QUEUES = hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigtimedwait")  # POSIX, not Windows


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def queued_stops() -> Iterator[None]:
    """Hold SIGINT/SIGTERM for `take_stop` while a server runs; restore everything on exit.

    Enter it before anything starts threads (TensorFlow's import does): threads inherit the mask,
    so every thread blocks the two signals and they wait in the process's queue for the main
    thread's loop, even when the process started with them ignored or blocked, as children of
    some shells and supervisors do (a server that Ctrl-C cannot stop is a trap). Both raise
    KeyboardInterrupt if a thread that unblocked them is handed one anyway, and they stay plain
    KeyboardInterrupts where signals do not queue (Windows). A no-op outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_keyboard_interrupt) for sig in SIGNAL_NAMES}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNAL_NAMES) if _QUEUES else None
    try:
        yield
    finally:
        if mask is not None:
            while take_stop() is not None:  # a second Ctrl-C must not reach the restored handlers
                pass
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def unblock_in_this_thread() -> None:
    """Undo queued_stops's mask in the calling thread only, e.g. one that starts a program (a
    browser) that must not inherit SIGINT/SIGTERM blocked. A signal the kernel then hands this
    thread still stops the server: Python runs handlers in the main thread."""
    if _QUEUES:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNAL_NAMES)


def take_stop() -> int | None:
    """The SIGINT or SIGTERM waiting in this process's queue, taken from it; None when none is."""
    if not _QUEUES:
        return None
    info = signal.sigtimedwait(SIGNAL_NAMES, 0)
    return info.si_signo if info is not None else None


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
