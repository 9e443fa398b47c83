"""Before any cluster work, one request per ``s3://`` URI a command was given, under a deadline.

Without it, missing credentials, an endpoint nobody listens on, a misspelt bucket or a missing
permission surface deep inside pyarrow or a Ray task as a long traceback (``When resolving region
for bucket ...: AWS Error NETWORK_CONNECTION``), possibly after minutes of retries. Here each
becomes one line (``S3AccessError``, a ``UserError``) that names the URI and what to set.

The probe lists the URI's prefix (at most one key), with botocore and the credential chain pyarrow
also uses (AWS_* variables, profiles, IRSA, instance roles). Without credentials it asks unsigned,
as pyarrow does then: a public bucket passes. Every wait is bounded: botocore's connect and read
timeouts and attempts, and an overall deadline over all the URIs, past which the probe's thread is
left behind (a daemon: it cannot keep the command from exiting). ``classify`` turns the error into
the line; it is pure, and never shows a credential.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse

from bonito_ray.errors import UserError
from bonito_ray.storage import s3_endpoint_in_force, s3_region

T = TypeVar("T")
S3_SCHEMES = ("s3", "s3a")  # what storage.resolve_filesystem sends to an S3 endpoint
GLOB_CHARS = "*?["
# S3's answers that mean the credentials themselves were refused, not what they may do.
REFUSED_CREDENTIALS = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                       "TokenRefreshRequired", "InvalidClientTokenId", "UnrecognizedClientException")
DENIED = ("AccessDenied", "AllAccessDisabled", "AccountProblem", "Forbidden", "403")
WRONG_REGION = ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "301")
SET_CREDENTIALS = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or give the machine a role)"
SET_ENDPOINT = "--s3-endpoint (or AWS_ENDPOINT_URL)"
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class S3AccessError(UserError, OSError):
    """An s3:// URI that cannot be used: no credentials, no endpoint, no bucket, no permission, no answer."""


@dataclass(frozen=True)
class Deadlines:
    """How long the check may wait: per connection, per answer, attempts per request, and in all."""

    connect_s: float = 5.0
    read_s: float = 10.0
    attempts: int = 2
    overall_s: float = 30.0


@dataclass(frozen=True)
class Probe:
    """What one probe asked, for its message: never the credentials, only where they came from."""

    uri: str
    bucket: str
    prefix: str
    endpoint: str | None  # None: AWS itself
    region: str
    credentials: str | None  # botocore's name of their source ("env", "iam-role", ...); None: none found

    @property
    def where(self) -> str:
        return f"endpoint {self.endpoint}" if self.endpoint else f"AWS S3 (region {self.region})"


class DeadlinePassed(Exception):
    """No answer within the overall deadline (the asking thread is left behind)."""

    def __init__(self, seconds: float, waiting_for: str = "S3") -> None:
        super().__init__(f"no answer from {waiting_for} within {seconds:g} s")
        self.seconds, self.waiting_for = seconds, waiting_for


def s3_uris(settings: Mapping | object) -> list[str]:
    """The s3:// URIs among the values of ``settings`` (parsed arguments or a config dataclass), in their order,
    what the job writes (``output``) last: a corpus that cannot be read is the first thing to say."""
    named = ({f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
             if dataclasses.is_dataclass(settings) else dict(settings))
    values = [value for name, value in named.items() if name != "output"] + [named.get("output")]
    found: list[str] = []
    for value in values:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str) and _is_s3(item):
                found.append(item)
    return list(dict.fromkeys(found))


def check_settings(settings: Mapping | object, deadlines: Deadlines = Deadlines()) -> None:
    """``check`` every s3:// URI among ``settings``, at its ``s3_endpoint`` if it has one."""
    endpoint = (settings.get("s3_endpoint") if isinstance(settings, Mapping)
                else getattr(settings, "s3_endpoint", None))
    check(s3_uris(settings), endpoint, deadlines)


def check(uris: Iterable[str], s3_endpoint: str | None = None, deadlines: Deadlines = Deadlines(),
          clock: Callable[[], float] = time.monotonic) -> None:
    """Raise ``S3AccessError`` (one line) for the first s3:// URI of ``uris`` that cannot be listed."""
    uris = [u for u in uris if _is_s3(u)]
    if not uris:
        return
    endpoint = s3_endpoint_in_force(s3_endpoint)  # an endpoint with credentials in it is refused here
    if endpoint and "://" not in endpoint:
        endpoint = f"https://{endpoint}"  # as storage and the lease read it
    ends = clock() + deadlines.overall_s

    def remaining() -> float:
        return max(0.0, ends - clock())

    import botocore.session

    session = botocore.session.get_session()
    probe = Probe(uris[0], *split_uri(uris[0]), endpoint, s3_region(), credentials=None)
    with _botocore_quiet():  # its INFO lines ("Found credentials in ...") would make the error's line two
        # Instance metadata, a container role or SSO may be asked: botocore bounds those waits itself.
        credentials = _asking(probe, [], lambda: _within(remaining(), session.get_credentials, "AWS credentials"))
        secrets = _secrets(credentials)
        source = None if credentials is None else credentials.method or "the credential chain"
        client = _asking(probe, secrets, lambda: _client(session, credentials is not None, endpoint, probe.region,
                                                          deadlines))
        for uri in uris:
            probe = Probe(uri, *split_uri(uri), endpoint, probe.region, source)
            _asking(probe, secrets, lambda: _within(remaining(), lambda: _list_or_head(client, probe), "S3"))


def _is_s3(uri: str) -> bool:
    return "://" in uri and uri.split("://", 1)[0] in S3_SCHEMES


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, key prefix to list) of an s3:// URI; a glob is cut at its first glob character."""
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    cut = min((key.find(c) for c in GLOB_CHARS if c in key), default=len(key))
    return bucket, key[:cut]


def _asking(probe: Probe, secrets: list[str], ask: Callable[[], T]) -> T:
    """``ask()``, with a botocore error or a passed deadline raised as ``S3AccessError``, in one line."""
    try:
        return ask()
    except DeadlinePassed as err:
        raise S3AccessError(classify(err, probe, secrets)) from None
    except Exception as err:  # noqa: BLE001 - classify tells botocore's errors apart; anything else is ours
        if not _is_botocore_error(err):
            raise
        raise S3AccessError(classify(err, probe, secrets)) from None


def _secrets(credentials) -> list[str]:
    """The values of ``credentials`` (botocore's), to be masked should an error's text hold one."""
    if credentials is None:
        return []
    frozen = credentials.get_frozen_credentials()
    return [s for s in (frozen.access_key, frozen.secret_key, frozen.token) if s]


def _client(session, signed: bool, endpoint: str | None, region: str, deadlines: Deadlines):
    """An S3 client with bounded waits; unsigned without credentials, as pyarrow asks then."""
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(connect_timeout=deadlines.connect_s, read_timeout=deadlines.read_s,
                    retries={"total_max_attempts": deadlines.attempts, "mode": "standard"},
                    ignore_configured_endpoint_urls=True,  # the endpoint is ours (--s3-endpoint, AWS_ENDPOINT_URL)
                    **({} if signed else {"signature_version": UNSIGNED}))
    return session.create_client("s3", endpoint_url=endpoint, region_name=region, config=config)


def _list_or_head(client, probe: Probe) -> None:
    """List one key under the probe's prefix; if listing is denied, a readable object there also passes
    (a single input file with s3:GetObject but not s3:ListBucket is what pyarrow reads)."""
    from botocore.exceptions import ClientError

    try:
        client.list_objects_v2(Bucket=probe.bucket, Prefix=probe.prefix, MaxKeys=1)
    except ClientError as err:
        if _code(err) not in DENIED or not probe.prefix:
            raise
        try:
            client.head_object(Bucket=probe.bucket, Key=probe.prefix)
        except ClientError:
            raise err from None


@contextlib.contextmanager
def _botocore_quiet():
    logger = logging.getLogger("botocore")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _within(seconds: float, work: Callable[[], T], waiting_for: str) -> T:
    """``work()`` in a daemon thread: what it returns or raises, or ``DeadlinePassed`` after ``seconds``."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            outcome.append((False, err))

    thread = threading.Thread(target=run, name="s3-preflight", daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        raise DeadlinePassed(seconds, waiting_for)
    done, value = outcome[0]
    if not done:
        raise value
    return value


def _is_botocore_error(err: BaseException) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(err, (BotoCoreError, ClientError))


def _code(err: BaseException) -> str:
    response = getattr(err, "response", None) or {}
    code = response.get("Error", {}).get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(code or "")


def classify(err: BaseException, probe: Probe, secrets: Iterable[str] = ()) -> str:
    """The one line for ``err`` (a botocore error or ``DeadlinePassed``) met probing ``probe``; any of
    ``secrets`` (the credentials in use) that the error's text holds is masked."""
    from botocore import exceptions as bx

    line = _describe(err, probe, bx)
    known = [*secrets, *(os.environ.get(n) for n in CREDENTIAL_VARIABLES)]
    for secret in sorted({s for s in known if s}, key=len, reverse=True):
        line = line.replace(secret, "***")
    return " ".join(line.split())  # one line, whatever the server's message held


def _describe(err: BaseException, probe: Probe, bx) -> str:
    uri, where, bucket = probe.uri, probe.where, probe.bucket
    endpoint_hint = (f"check {SET_ENDPOINT} and the network" if probe.endpoint else
                     f"check the network and AWS_REGION, or set {SET_ENDPOINT} for an S3-compatible store "
                     "(MinIO, Ceph, R2)")
    no_credentials = "" if probe.credentials else f"; also, no AWS credentials were found: {SET_CREDENTIALS}"
    if isinstance(err, DeadlinePassed) and err.waiting_for != "S3":
        return (f"{uri}: looking up {err.waiting_for} (instance metadata, a container role, SSO) took more than "
                f"{err.seconds:g} s; {SET_CREDENTIALS}")
    if isinstance(err, DeadlinePassed):
        return f"{uri}: no answer from {where} within {err.seconds:g} s; {endpoint_hint}{no_credentials}"
    if isinstance(err, bx.ReadTimeoutError):
        return f"{uri}: {where} accepted the connection but did not answer in time; {endpoint_hint}{no_credentials}"
    if isinstance(err, bx.SSLError):
        return (f"{uri}: the TLS handshake with {where} failed; if it speaks plain HTTP, give "
                f"{SET_ENDPOINT} as http://host:port{no_credentials}")
    if isinstance(err, bx.ProxyConnectionError):
        proxy = urlparse(str(err.kwargs.get("proxy_url", "")))
        shown = f"{proxy.scheme}://{proxy.hostname}:{proxy.port}" if proxy.hostname else "the proxy"
        return (f"{uri}: cannot connect to the proxy {shown} on the way to {where}; check HTTPS_PROXY, "
                f"HTTP_PROXY and NO_PROXY{no_credentials}")
    if isinstance(err, (bx.ConnectionError, bx.ConnectionClosedError)):
        failed = "connecting timed out" if isinstance(err, bx.ConnectTimeoutError) else "cannot connect"
        return f"{uri}: {failed} to {where}; {endpoint_hint}{no_credentials}"
    if isinstance(err, bx.PartialCredentialsError):
        return f"{uri}: the AWS credentials are incomplete ({err}); {SET_CREDENTIALS}"
    if isinstance(err, (bx.ProfileNotFound, bx.CredentialRetrievalError, bx.NoCredentialsError)):
        return f"{uri}: no usable AWS credentials ({err}); {SET_CREDENTIALS}"
    if isinstance(err, bx.ParamValidationError) or _code(err) == "InvalidBucketName":
        return f"{uri}: '{bucket}' is not a valid S3 bucket name"
    if isinstance(err, bx.ClientError):
        code = _code(err)
        if code in ("NoSuchBucket", "404"):
            return (f"{uri}: bucket '{bucket}' does not exist at {where}; check the bucket name"
                    + ("" if probe.endpoint else f", or set {SET_ENDPOINT} if it is on an S3-compatible store"))
        if not probe.credentials:
            return (f"{uri}: no AWS credentials were found and {where} refused anonymous access ({code}); "
                    f"{SET_CREDENTIALS}")
        if code in REFUSED_CREDENTIALS:
            return (f"{uri}: {where} refused the AWS credentials (from {probe.credentials}: {code}); check "
                    "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (or AWS_PROFILE)"
                    + ("" if probe.endpoint else f", and {SET_ENDPOINT} if the bucket is not on AWS"))
        if code in DENIED:
            return (f"{uri}: access denied ({code}) to bucket '{bucket}' for the AWS credentials from "
                    f"{probe.credentials}; grant them s3:ListBucket on it (and s3:GetObject, s3:PutObject and "
                    "s3:DeleteObject under the prefix), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
                    "AWS_PROFILE) to credentials that have them")
        if code in WRONG_REGION:
            return f"{uri}: bucket '{bucket}' is not in region {probe.region} ({code}); set AWS_REGION to its region"
        message = err.response.get("Error", {}).get("Message")
        answered = f"{uri}: {where} answered {code or 'an error'} listing bucket '{bucket}'"
        return f"{answered}: {message}" if message else answered
    return f"{uri}: S3 check failed at {where}: {type(err).__name__}: {err}{no_credentials}"
