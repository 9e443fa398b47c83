"""The output lease (bonito_ray.lease): its TTL's bounds, renewal, and that two runs never both hold an output.

Time is a stepped stand-in for the lease's ``Clock``: nothing here sleeps, and a lease renews only when a
test calls ``renew()`` (its thread waits on the stand-in, which never ends the wait by itself).
"""

import json
import threading
import time

import pytest
from pyarrow.fs import LocalFileSystem

from bonito_ray import lease as lease_module
from bonito_ray.config import ConfigError
from bonito_ray.lease import Clock, Lease, LeaseHeldError, LeaseLostError
from bonito_ray.schema import LEASE_FILE
from bonito_ray.storage import resolve_filesystem

TTL = 30.0


class SteppedClock(Clock):
    """Moves when a test steps it. ``ahead``: how far its wall time runs ahead of the other clocks' (another
    host's clock, or a run whose heartbeat write took that long)."""

    def __init__(self, start: float, ahead: float = 0.0) -> None:
        self.now, self.ahead = start, ahead

    def time(self) -> float:
        return self.now + self.ahead

    def monotonic(self) -> float:
        return self.now

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        return stop.wait()  # no renewal but the test's own

    def step(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def local(tmp_path):
    """(acquire(clock) on a local output, the lease file)."""
    fs, out = LocalFileSystem(), str(tmp_path / "out")
    return (lambda clock: Lease.acquire(fs, out, out, ttl=TTL, clock=clock)), tmp_path / "out" / LEASE_FILE


@pytest.mark.parametrize("value", ["1e-9", "0.05", "9.99", "86401", "1e308", "nan", "inf", "-inf", "0", "-5"])
def test_a_lease_ttl_outside_its_bounds_is_one_line_naming_the_variable_and_the_bounds(monkeypatch, value):
    monkeypatch.setenv("BONITO_RAY_LEASE_TTL", value)
    with pytest.raises(ConfigError) as refused:
        lease_module.lease_ttl()
    assert str(refused.value) == f"BONITO_RAY_LEASE_TTL={value!r} must be a number of seconds from 10 to 86400"


def test_a_lease_ttl_within_its_bounds_is_taken_and_text_is_refused(monkeypatch):
    for value in ("10", "300", "86400"):
        monkeypatch.setenv("BONITO_RAY_LEASE_TTL", value)
        assert lease_module.lease_ttl() == float(value)
    monkeypatch.setenv("BONITO_RAY_LEASE_TTL", "ten")
    with pytest.raises(ConfigError, match=r"^BONITO_RAY_LEASE_TTL='ten' is not a number of seconds$"):
        lease_module.lease_ttl()
    monkeypatch.delenv("BONITO_RAY_LEASE_TTL")
    assert lease_module.lease_ttl() == 300


def test_a_lease_cannot_be_acquired_with_a_ttl_outside_the_bounds(tmp_path):
    with pytest.raises(ConfigError, match=r"^a lease TTL of 0\.05 must be a number of seconds from 10 to 86400$"):
        Lease.acquire(LocalFileSystem(), str(tmp_path), str(tmp_path), ttl=0.05)
    assert not (tmp_path / LEASE_FILE).exists()


def test_a_run_taken_over_fails_its_check_at_once_whatever_its_own_clock_says(local):
    acquire, path = local
    start = time.time()
    holder = acquire(SteppedClock(start))
    # To the second run (its host's clock 31 s ahead) the holder's heartbeat is older than the TTL: it takes over.
    taker = acquire(SteppedClock(start, ahead=TTL + 1))
    assert json.loads(path.read_text())["run_id"] == taker.run_id
    taker.check()
    with pytest.raises(LeaseLostError, match=f"this run lost its lease \\(run {taker.run_id} took it over\\)"):
        holder.check()  # by its own clock it renewed just now: only the store says it lost
    holder.renew()
    holder.release()
    assert json.loads(path.read_text())["run_id"] == taker.run_id  # not deleted: not its own
    taker.check()
    taker.release()
    assert not path.exists()


def test_a_holder_counts_its_ttl_from_the_heartbeat_it_wrote_as_the_other_runs_do(local, monkeypatch):
    acquire, path = local
    clock = SteppedClock(time.time())
    holder = acquire(clock)
    write = holder.store.replace
    monkeypatch.setattr(holder.store, "replace", lambda tag, data: clock.step(TTL + 1) or write(tag, data))
    holder.renew()  # the write took longer than the TTL: the heartbeat it wrote is stale already
    with pytest.raises(LeaseLostError, match=r"not renewed for 30s"):
        holder.check()
    taker = acquire(SteppedClock(clock.now))  # and another run may take the output over now
    taker.release()
    holder.release()


def test_a_renewed_lease_holds_and_one_left_unrenewed_for_a_ttl_is_lost_and_taken_over(local):
    acquire, path = local
    clock = SteppedClock(time.time())
    holder = acquire(clock)
    clock.step(TTL - 10)
    holder.renew()
    clock.step(TTL - 10)  # 40 s since it was acquired, 20 s since it was renewed
    holder.check()
    assert json.loads(path.read_text())["heartbeat"] == clock.time() - (TTL - 10)
    with pytest.raises(LeaseHeldError, match=f"in use by run {holder.run_id}"):
        acquire(SteppedClock(clock.now))
    clock.step(11)
    with pytest.raises(LeaseLostError, match="not renewed for 30s"):
        holder.check()
    taker = acquire(SteppedClock(clock.now))
    holder.release()
    taker.check()
    taker.release()


def test_a_lease_overwritten_by_hand_is_known_lost_at_the_next_check_and_left_alone(local):
    acquire, path = local
    holder = acquire(SteppedClock(time.time()))
    intruder = {"run_id": "intruder", "host": "elsewhere", "pid": 1, "heartbeat": time.time(), "ttl": 60}
    path.write_text(json.dumps(intruder))
    with pytest.raises(LeaseLostError, match=r"\(run intruder took it over\)"):
        holder.check()
    holder.release()
    assert json.loads(path.read_text())["run_id"] == "intruder"
    path.unlink()
    gone = acquire(SteppedClock(time.time()))
    path.unlink()
    with pytest.raises(LeaseLostError, match=r"\(its lease file is gone\)"):
        gone.check()
    gone.release()


def test_a_check_that_cannot_read_the_lease_back_stops_the_run_in_one_line(local, monkeypatch):
    acquire, _ = local
    holder = acquire(SteppedClock(time.time()))

    def unreadable():
        raise OSError("connection reset\nby peer")

    monkeypatch.setattr(holder.store, "read", unreadable)
    with pytest.raises(LeaseLostError, match=r"cannot read this run's lease back to check it still holds it "
                                             r"\(connection reset\), so it stops$"):
        holder.check()
    monkeypatch.undo()
    holder.check()  # a passing fault: not lost
    holder.release()


def test_the_renewal_thread_renews_every_fifth_of_the_ttl_on_its_clock(local):
    acquire, path = local

    class Ticks(SteppedClock):
        def __init__(self, start):
            super().__init__(start)
            self.waits, self.go, self.renewed = [], threading.Event(), threading.Event()

        def wait(self, stop, seconds):
            self.waits.append(seconds)
            if len(self.waits) == 1:
                self.go.wait(60)
                return stop.is_set()
            self.renewed.set()
            return stop.wait()

    clock = Ticks(time.time())
    holder = acquire(clock)
    clock.step(6)
    clock.go.set()
    assert clock.renewed.wait(60)
    assert clock.waits == [TTL / 5, TTL / 5]
    assert json.loads(path.read_text())["heartbeat"] == clock.time()
    holder.release()


# Lease files of another version, or written by hand: judged stale, and taken over, without a traceback.
ODD_RECORDS = {
    "text for numbers": lambda now, host: {"heartbeat": "yesterday", "ttl": "long", "pid": "x"},  # was ValueError
    "a NaN ttl": lambda now, host: {"heartbeat": now - 301, "ttl": float("nan")},  # was never stale
    "a ttl of 1e308": lambda now, host: {"heartbeat": now - 86_401, "ttl": 1e308},  # judged with a day at most
    "numbers too large": lambda now, host: {"heartbeat": now, "ttl": 10 ** 400, "pid": 10 ** 30, "host": host},
}


@pytest.mark.parametrize("odd", ODD_RECORDS.values(), ids=ODD_RECORDS.keys())
def test_a_lease_file_with_odd_fields_is_judged_stale_without_a_traceback(local, odd):
    import socket

    acquire, path = local
    now = time.time()
    path.parent.mkdir()
    path.write_text(json.dumps({"run_id": "odd", "host": "elsewhere", "pid": 1, **odd(now, socket.gethostname())}))
    with acquire(SteppedClock(now)) as taken:
        assert json.loads(path.read_text())["run_id"] == taken.run_id


def test_on_s3_a_run_taken_over_fails_its_check_at_once(s3_endpoint):
    fs, root = resolve_filesystem("s3://corpus/lease-check", s3_endpoint)
    start = time.time()
    holder = Lease.acquire(fs, root, "s3://corpus/lease-check", s3_endpoint, ttl=TTL, clock=SteppedClock(start))
    taker = Lease.acquire(fs, root, "s3://corpus/lease-check", s3_endpoint, ttl=TTL,
                          clock=SteppedClock(start, ahead=TTL + 1))
    taker.check()
    with pytest.raises(LeaseLostError, match=f"run {taker.run_id} took it over"):
        holder.check()
    holder.release()
    taker.check()
    taker.release()
