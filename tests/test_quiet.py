"""Waiting for the workers to go quiet before a burst (bnbench.timing.quiet): on synthetic CPU
readings with a fake clock, and on a real process that spins for a while and then sleeps."""
import subprocess
import sys
import time

from bnbench.timing import quiet


class FakeMachine:
    """A clock and each process's CPU time: ``busy_until[pid]`` seconds of one core each, then idle."""

    def __init__(self, busy_until):
        self.now = 0.0
        self.busy_until = busy_until

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds

    def read(self, pid):
        until = self.busy_until[pid]
        if until is None:
            return None
        return min(self.now, until)


def test_it_waits_while_a_worker_spins_and_stops_when_it_is_quiet():
    machine = FakeMachine({1: 0.0, 2: 0.22})
    waited, went_quiet = quiet.wait_until_quiet([1, 2], window=0.05, read=machine.read, sleep=machine.sleep,
                                                clock=machine.clock)
    assert went_quiet and 0.22 <= waited <= 0.3 + 1e-9     # the window after the spin ends is the quiet one


def test_a_worker_busy_for_longer_than_the_limit_is_left_so_and_said():
    machine = FakeMachine({1: 100.0})
    waited, went_quiet = quiet.wait_until_quiet([1], window=0.05, max_wait=0.5, read=machine.read,
                                                sleep=machine.sleep, clock=machine.clock)
    assert not went_quiet and 0.5 <= waited < 0.6


def test_quiet_workers_and_unreadable_ones_cost_one_window():
    machine = FakeMachine({1: 0.0, 2: None})
    waited, went_quiet = quiet.wait_until_quiet([1, 2], window=0.05, read=machine.read, sleep=machine.sleep,
                                                clock=machine.clock)
    assert went_quiet and waited == 0.05
    assert quiet.cpu_seconds(2 ** 22 + 12345) is None       # no such process


def test_a_real_process_that_spins_then_sleeps_is_waited_for():
    """It spins 0.4 s of wall time, then sleeps. Sharing 2 cores with two test workers of two
    threads each, it still gets about 0.4 of a core while it spins, four times the 0.1 taken as
    busy here (more than one tick of 10 ms in a window of 0.1 s), so the wait lasts at least 0.2 s, and
    ends well before the 1 s limit once it sleeps."""
    spinner = subprocess.Popen([sys.executable, "-c", "import sys, time\nsys.stdout.write('go\\n'); sys.stdout.flush()\n"
                                "end = time.time() + 0.4\nwhile time.time() < end: pass\ntime.sleep(30)"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert spinner.stdout.readline().strip() == "go"
        started = time.perf_counter()
        waited, went_quiet = quiet.wait_until_quiet([spinner.pid], window=0.1, busy=0.1, max_wait=2.0)
        assert went_quiet and 0.2 <= waited <= 1.0, waited
        assert time.perf_counter() - started >= waited
        assert quiet.cpu_seconds(spinner.pid) >= 0.1
    finally:
        spinner.kill()
        spinner.wait()
