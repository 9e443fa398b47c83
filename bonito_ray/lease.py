"""The output lease: one writer per output.

A run holds ``OUTPUT/_lease.json`` (its run id, host, pid, heartbeat time and TTL) from planning
to its end. The protocol:

- **acquire**: create the file exclusively: on local disk a hard link of a fully written
  temporary file (exclusive like ``O_EXCL``, and never seen half written), on S3 a conditional
  put (``If-None-Match: *``). If it exists and its holder is live, the run is refused
  (``LeaseHeldError``).
- **stale**: a lease whose heartbeat is older than its TTL, or whose holder was a process of this
  host that no longer exists (a killed run rerun on the same machine need not wait). A stale
  lease is taken over by compare-and-swap: on S3 a put with ``If-Match`` the stale lease's ETag;
  on local disk by renaming the stale file aside (one taker's rename wins), checking it is the
  very lease judged stale, and creating a fresh one exclusively.
- **renew**: a daemon thread rewrites the heartbeat every TTL/5, after checking the lease is still
  its own (on S3, ``If-Match`` its last ETag). A holder that finds the lease taken, or has not
  renewed it for a TTL (counted from when it stamped the heartbeat, as the other runs count), has
  lost it.
- **check**: the output lifecycle calls ``check()`` before every transition. It raises
  ``LeaseLostError`` when the lease is lost, and it reads the lease back: unless the store holds
  the very version this holder last wrote (its tag: its bytes, or its ETag), the lease was taken
  over, whatever this holder's clock says. So two runs never both pass ``check()``.
- **release**: at the end of the run, success or failure, the file is deleted if still its own.

The TTL is ``BONITO_RAY_LEASE_TTL`` (within ``LEASE_TTL_BOUNDS``). Clocks of the hosts sharing an
output must agree to well within it; the lease reads them through a ``Clock``, which tests replace.
Object stores other than S3 have no conditional write here: there the lease is checked but not
atomic (a warning says so).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from urllib.parse import urlparse

import pyarrow.fs as pafs

from bonito_ray.config import ConfigError
from bonito_ray.errors import UserError
from bonito_ray.schema import LEASE_FILE, LEASE_TTL_BOUNDS, LEASE_TTL_ENV, LEASE_TTL_SECONDS, TEMPORARY_PREFIX
from bonito_ray.storage import join

logger = logging.getLogger(__name__)

RENEWALS_PER_TTL = 5


class LeaseHeldError(UserError, RuntimeError):
    """Another live run holds the output."""


class LeaseLostError(UserError, RuntimeError):
    """This run's lease was taken over (it stopped renewing it for a TTL): it must not go on writing."""


def lease_ttl() -> float:
    """Seconds a lease lives without renewal: ``BONITO_RAY_LEASE_TTL`` or the default."""
    value = os.environ.get(LEASE_TTL_ENV)
    if not value:
        return LEASE_TTL_SECONDS
    try:
        ttl = float(value)
    except ValueError:
        raise ConfigError(f"{LEASE_TTL_ENV}={value!r} is not a number of seconds") from None
    return checked_ttl(ttl, f"{LEASE_TTL_ENV}={value!r}")


def checked_ttl(ttl: float, given: str) -> float:
    """``ttl`` if it is within ``LEASE_TTL_BOUNDS``; else a ConfigError saying where it was ``given``."""
    low, high = LEASE_TTL_BOUNDS
    if not low <= ttl <= high:  # NaN too
        raise ConfigError(f"{given} must be a number of seconds from {low:g} to {high:g}")
    return ttl


class Clock:
    """The lease's time: wall time for heartbeats, which the runs of every host compare; this process's
    monotonic time for its own renewals; the wait between renewals. Tests step a stand-in instead of sleeping."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Wait ``seconds``, or until ``stop`` is set: True if it is."""
        return stop.wait(seconds)


SYSTEM_CLOCK = Clock()


class Lease:
    """This run's hold on an output; ``acquire`` it, ``check`` it before each transition, ``release`` it."""

    def __init__(self, store: "_Store", uri: str, record: dict, tag: object, clock: Clock, renewed: float) -> None:
        # renewed: the monotonic time at which the heartbeat in the store was stamped
        self.store, self.uri, self.record, self._tag, self.clock = store, uri, record, tag, clock
        self._renewed = renewed
        self._lost: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._renew_loop, name="bonito-ray-lease", daemon=True)
        self._thread.start()

    @classmethod
    def acquire(cls, fs: pafs.FileSystem, root: str, uri: str, s3_endpoint: str | None = None,
                ttl: float | None = None, clock: Clock = SYSTEM_CLOCK) -> "Lease":
        """Hold the output at ``root`` (``uri`` names it in messages); raises LeaseHeldError if a live run does."""
        ttl = lease_ttl() if ttl is None else checked_ttl(ttl, f"a lease TTL of {ttl!r}")
        store = _store_for(fs, root, uri, s3_endpoint)
        renewed = clock.monotonic()
        record = {"run_id": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
                  "heartbeat": clock.time(), "ttl": ttl}
        tag = store.create(_encode(record))
        if tag is None:
            current = store.read()
            if current is not None:
                held, current_tag = current
                why = stale_reason(held, clock.time())
                if why is None:
                    raise LeaseHeldError(_held_message(uri, held, clock.time()))
                tag = store.take_over(current_tag, _encode(record))
                if tag is None:
                    raise LeaseHeldError(f"output {uri} was just taken by another run; "
                                         "only one run may write to an output at a time")
                logger.warning("output %s: took over the lease of run %s (%s)", uri, held.get("run_id"), why)
            else:  # released between our create and our read
                tag = store.create(_encode(record))
                if tag is None:
                    raise LeaseHeldError(f"output {uri} was just taken by another run; "
                                         "only one run may write to an output at a time")
        return cls(store, uri, record, tag, clock, renewed)

    @property
    def run_id(self) -> str:
        return self.record["run_id"]

    def check(self) -> None:
        """Raise LeaseLostError if this run no longer holds the output: by its own clock (not renewed for a
        TTL), or by the store (the lease there is not the version this run last wrote)."""
        with self._lock:
            if self._lost is None:
                try:
                    self._lost = self._why_lost()
                except Exception as err:  # noqa: BLE001 - a store fault: not known lost, but not known held
                    why = (str(err).splitlines() or [type(err).__name__])[0]
                    raise LeaseLostError(f"output {self.uri}: cannot read this run's lease back to check it still "
                                         f"holds it ({why}), so it stops") from err
            lost = self._lost
        if lost is not None:
            raise LeaseLostError(f"output {self.uri}: this run lost its lease ({lost}); "
                                 "another run may be writing there, so this one stops")

    def _why_lost(self) -> str | None:
        ttl = self.record["ttl"]
        if self.clock.monotonic() - self._renewed > ttl:
            return f"not renewed for {ttl:g}s"
        current = self.store.read()
        if current is None:
            return "its lease file is gone"
        held, tag = current
        return None if tag == self._tag else f"run {held.get('run_id')} took it over"

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still this run's. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        with self._lock:
            if self._lost is None:
                self.store.delete(self._tag)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _renew_loop(self) -> None:
        while not self.clock.wait(self._stop, self.record["ttl"] / RENEWALS_PER_TTL):
            self.renew()

    def renew(self) -> None:
        """Rewrite the heartbeat, if the lease is still this run's."""
        with self._lock:
            if self._lost is not None:
                return
            stamped = self.clock.monotonic()  # the other runs count the TTL from the heartbeat: so does this one
            record = {**self.record, "heartbeat": self.clock.time()}
            try:
                tag = self.store.replace(self._tag, _encode(record))
            except Exception as err:  # noqa: BLE001 - a passing store fault; check() judges by age
                logger.warning("output %s: could not renew the lease: %s", self.uri, err)
                return
            if tag is None:
                self._lost = "another run took it over"
                return
            self.record, self._tag, self._renewed = record, tag, stamped


def stale_reason(record: dict, now: float) -> str | None:
    """Why a lease may be taken over at wall time ``now`` (None: its holder is live)."""
    age = now - _field(record, "heartbeat", 0.0)
    if age > _record_ttl(record):
        return f"no heartbeat for {age:.0f}s"
    if record.get("host") == socket.gethostname() and not _pid_alive(int(_field(record, "pid", 0))):
        return f"its process {record.get('pid')} on this host is gone"
    return None


def _field(record: dict, key: str, default: float) -> float:
    """A number of a lease written by any run, of any version, or by hand: ``default`` when it holds none."""
    value = record.get(key)
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.nan
    return number if math.isfinite(number) else default


def _record_ttl(record: dict) -> float:
    low, high = LEASE_TTL_BOUNDS
    return min(max(_field(record, "ttl", LEASE_TTL_SECONDS), low), high)


def _held_message(uri: str, record: dict, now: float) -> str:
    age = now - _field(record, "heartbeat", 0.0)
    ttl = _record_ttl(record)
    return (f"output {uri} is in use by run {record.get('run_id')} (pid {record.get('pid')} on "
            f"{record.get('host')}, heartbeat {age:.0f}s ago); only one run may write to an output at a time "
            f"(a killed run's lease expires {max(0.0, ttl - age):.0f}s from now)")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: no process can have that id
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _encode(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True).encode("utf-8")


def _decode(data: bytes) -> dict:
    try:
        record = json.loads(data)
    except ValueError:
        record = None
    # An unreadable lease is treated as stale at once: a complete lease is always valid JSON.
    return record if isinstance(record, dict) else {"run_id": "unreadable", "heartbeat": 0}


class _Store:
    """Where the lease file lives; ``tag`` identifies one version of it (compare-and-swap)."""

    def read(self) -> tuple[dict, object] | None: ...
    def create(self, data: bytes) -> object | None: ...  # None: it exists
    def replace(self, tag: object, data: bytes) -> object | None: ...  # None: not version `tag`
    def take_over(self, tag: object, data: bytes) -> object | None: ...
    def delete(self, tag: object) -> None: ...


class _LocalStore(_Store):
    """A local (or mounted) directory; the tag is the lease's bytes."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self):
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return _decode(data), data

    def create(self, data):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        temporary = self._temporary(data)
        try:
            os.link(temporary, self.path)
        except FileExistsError:
            return None
        finally:
            os.unlink(temporary)
        return data

    def replace(self, tag, data):
        current = self.read()
        if current is None or current[1] != tag:
            return None
        os.replace(self._temporary(data), self.path)
        return data

    def take_over(self, tag, data):
        aside = f"{self.path}.taken-{uuid.uuid4().hex}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return None
        try:
            with open(aside, "rb") as f:
                if f.read() != tag:  # not the lease judged stale: put it back
                    try:
                        os.link(aside, self.path)
                    except FileExistsError:
                        pass
                    return None
            return self.create(data)
        finally:
            os.unlink(aside)

    def delete(self, tag):
        current = self.read()
        if current is not None and current[1] == tag:
            os.unlink(self.path)

    def _temporary(self, data: bytes) -> str:
        directory, name = os.path.split(self.path)
        temporary = os.path.join(directory, f"{TEMPORARY_PREFIX}{uuid.uuid4().hex}-{name}")
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return temporary


class _S3Store(_Store):
    """An S3 (or S3-compatible) object; the tag is its ETag. Conditional writes need S3 (2024+) or MinIO."""

    _LOST = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409", "404")

    def __init__(self, bucket: str, key: str, endpoint: str | None) -> None:
        import botocore.session  # installed with s3fs; the standard credential chain applies

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        if endpoint and "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        self.client = botocore.session.get_session().create_client("s3", endpoint_url=endpoint, region_name=region)
        self.bucket, self.key = bucket, key

    def read(self):
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.client.exceptions.NoSuchKey:
            return None
        return _decode(answer["Body"].read()), answer["ETag"]

    def create(self, data):
        return self._put(data, IfNoneMatch="*")

    def replace(self, tag, data):
        return self._put(data, IfMatch=tag)

    take_over = replace

    def delete(self, tag):
        current = self.read()
        if current is not None and current[1] == tag:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)

    def _put(self, data: bytes, **condition: str):
        from botocore.exceptions import ClientError

        try:
            return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)["ETag"]
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in self._LOST:
                return None
            raise


class _CheckedStore(_Store):
    """Any other pyarrow filesystem: read, compare, write; not atomic."""

    def __init__(self, fs: pafs.FileSystem, path: str) -> None:
        self.fs, self.path = fs, path

    def read(self):
        if self.fs.get_file_info(self.path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(self.path) as f:
            data = f.read()
        return _decode(data), data

    def create(self, data):
        if self.read() is not None:
            return None
        return self._write(data)

    def replace(self, tag, data):
        current = self.read()
        return self._write(data) if current is not None and current[1] == tag else None

    take_over = replace

    def delete(self, tag):
        current = self.read()
        if current is not None and current[1] == tag:
            self.fs.delete_file(self.path)

    def _write(self, data: bytes) -> bytes:
        with self.fs.open_output_stream(self.path) as f:
            f.write(data)
        return data


def _store_for(fs: pafs.FileSystem, root: str, uri: str, s3_endpoint: str | None) -> _Store:
    path = join(root, LEASE_FILE)
    if isinstance(fs, pafs.LocalFileSystem):
        return _LocalStore(path)
    scheme = urlparse(uri).scheme
    if scheme in ("s3", "s3a"):
        bucket, key = path.split("/", 1)
        return _S3Store(bucket, key, s3_endpoint or os.environ.get("AWS_ENDPOINT_URL"))
    logger.warning("output %s: %s:// has no conditional writes here, so one writer per output is checked "
                   "but not guaranteed", uri, scheme)
    return _CheckedStore(fs, path)
