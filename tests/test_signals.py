"""SIGINT/SIGTERM handling (signals.py and the StopAtSafePoint callback): inside fit the first
signal only asks to stop, which the callback acts on at the next batch boundary; a second signal,
or one outside fit, stops at once; the previous handlers come back afterwards. The real thing,
on vae-train processes, is in test_resume.py."""

import os
import signal
import threading

import pytest

from vae_cli.callbacks import StopAtSafePoint
from vae_cli.errors import Interrupted
from vae_cli.signals import StopSignals, queued_stops, take_stop


def send(sig: int) -> None:
    os.kill(os.getpid(), sig)  # the handler runs in this (main) thread before os.kill returns


def test_inside_fit_the_first_signal_waits_for_the_next_batch_boundary(capfd):
    with StopSignals() as stops:
        safe_point = StopAtSafePoint(stops)
        with stops.deferred():
            safe_point.on_train_batch_end(0)  # nothing asked yet: training goes on
            send(signal.SIGTERM)
            assert stops.requested == signal.SIGTERM
            with pytest.raises(Interrupted) as stopped:
                safe_point.on_train_batch_end(1)
    assert stopped.value.exit_code == 143
    assert "SIGTERM received: stopping after this batch (send it again to stop at once)" in capfd.readouterr().err


def test_a_request_during_validation_is_acted_on_when_the_next_epoch_begins():
    with StopSignals() as stops, stops.deferred():
        send(signal.SIGINT)
        with pytest.raises(Interrupted) as stopped:
            StopAtSafePoint(stops).on_epoch_begin(3)
    assert stopped.value.exit_code == 130


def test_a_second_signal_or_one_outside_fit_stops_at_once():
    with StopSignals() as stops:
        with stops.deferred():
            send(signal.SIGINT)
            with pytest.raises(Interrupted) as second:
                send(signal.SIGINT)
        assert second.value.exit_code == 130
        with pytest.raises(Interrupted) as outside:
            send(signal.SIGTERM)
        assert outside.value.exit_code == 143


def test_the_previous_handlers_come_back():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with StopSignals():
        assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
    assert {sig: signal.getsignal(sig) for sig in before} == before


@pytest.mark.skipif(not hasattr(signal, "sigtimedwait"), reason="POSIX signal queues")
def test_a_server_takes_queued_stops_from_its_own_loop_and_leaves_the_handlers_as_they_were():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    main = threading.get_ident()  # thread-directed: this test process has other threads
    with queued_stops():
        signal.pthread_kill(main, signal.SIGTERM)  # no handler runs: it waits in the queue
        signal.pthread_kill(main, signal.SIGINT)
        assert {take_stop(), take_stop()} == {signal.SIGINT, signal.SIGTERM}
        assert take_stop() is None
        signal.pthread_kill(main, signal.SIGINT)  # one nobody took is dropped on the way out
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask
    assert take_stop() is None
