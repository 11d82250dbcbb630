"""SIGINT/SIGTERM handling (signals.py and the StopAtSafePoint callback): inside fit the first
signal only asks to stop, which the callback acts on at the next batch boundary; a second signal,
or one outside fit, stops at once; the previous handlers come back afterwards. The real thing,
on vae-train processes, is in test_resume.py."""

import os
import signal

import pytest

from vae_cli.callbacks import StopAtSafePoint
from vae_cli.errors import Interrupted
from vae_cli.signals import StopSignals


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
