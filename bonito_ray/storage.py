"""Filesystem resolution: local paths and URIs (s3://, gs://, abfs://, anything pyarrow or fsspec knows).

Credentials are never passed in here: pyarrow and fsspec take them from the standard environment
and credential chains (AWS_* variables, profiles, IRSA / workload identity). A custom S3 endpoint
(MinIO, Ceph, R2) comes from ``s3_endpoint`` or ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bonito_ray.errors import UserError


class EndpointError(UserError, ValueError):
    """An object-store endpoint that cannot be used as given (credentials written into it)."""


def check_endpoint(endpoint: str, name: str = "s3_endpoint") -> None:
    """Refuse an endpoint URL with credentials in it (``user:password@host``), without echoing them.

    Credentials come from the environment and credential chains only; one in the URL would also
    end up in logs and manifests, and pyarrow would take the user name for the host.
    """
    parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
    if "@" in parsed.netloc:
        shown = f"{parsed.scheme}://***@{parsed.netloc.rsplit('@', 1)[1]}"
        raise EndpointError(f"{name} {shown} has credentials in it; give them through AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY (or a profile), and the endpoint as scheme://host:port")


def s3_endpoint_in_force(s3_endpoint: str | None) -> str | None:
    """The S3 endpoint S3 URIs go to: ``s3_endpoint``, else AWS_ENDPOINT_URL, else None (AWS itself)."""
    endpoint = s3_endpoint or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        check_endpoint(endpoint, "s3_endpoint" if s3_endpoint else "AWS_ENDPOINT_URL")
    return endpoint or None


def s3_region() -> str:
    """The region of an S3 client at an endpoint: AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def resolve_filesystem(uri: str, s3_endpoint: str | None = None) -> tuple[pafs.FileSystem, str]:
    """Return the filesystem and the path inside it for a local path or a URI."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    scheme, path = uri.split("://", 1)
    endpoint = s3_endpoint_in_force(s3_endpoint) if scheme in ("s3", "s3a") else None
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        return (pafs.S3FileSystem(endpoint_override=parsed.netloc, scheme=parsed.scheme, region=s3_region()),
                path.rstrip("/"))
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import fsspec  # schemes pyarrow has no native filesystem for (abfs://, az://, ...)

        return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(scheme))), path.rstrip("/")


def driver_path(uri: str | None, only_existing: bool = False) -> str | None:
    """A local path made absolute against the driver's working directory; a URI (or None) as it is.

    User paths are resolved on the driver, before any work goes to Ray workers, whose working
    directory is not the user's (Ray Train runs each worker in its own trial folder). With
    ``only_existing``, a path that does not exist here is left as it is: a model argument that is
    not a local folder is a hub id (``org/name``).
    """
    if not uri or "://" in uri:
        return uri
    local = os.path.expanduser(uri)
    if only_existing and not os.path.exists(local):
        return uri
    return os.path.abspath(local)


def display_uri(uri: str, path: str) -> str:
    """The URI form of ``path`` (as the filesystem lists it) on the filesystem ``uri`` points into."""
    if "://" not in uri:
        return path
    return uri.split("://", 1)[0] + "://" + path


def join(base: str, *parts: str) -> str:
    """Join path segments with '/' (object stores and local POSIX paths alike)."""
    return "/".join([base.rstrip("/"), *parts])


def write_parquet(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    """Write ``table`` to ``path`` so that the file appears whole or not at all."""
    _atomically(fs, path, lambda target: pq.write_table(table, target, filesystem=fs))


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write a small file (a manifest, a marker) so that it appears whole or not at all."""

    def write(target: str) -> None:
        with fs.open_output_stream(target) as f:
            f.write(data)

    _atomically(fs, path, write)


def _atomically(fs: pafs.FileSystem, path: str, write) -> None:
    # Object stores publish an object only when its upload completes; a local file is written
    # under a hidden temporary name and renamed, so a killed writer never leaves half a file.
    if not isinstance(fs, pafs.LocalFileSystem):
        write(path)
        return
    directory, name = path.rsplit("/", 1)
    fs.create_dir(directory, recursive=True)
    temporary = f"{directory}/.tmp-{uuid.uuid4().hex}-{name}"
    write(temporary)
    fs.move(temporary, path)


def list_files(fs: pafs.FileSystem, directory: str) -> list[str]:
    """Every file under ``directory`` (recursively), sorted; none when it does not exist."""
    selector = pafs.FileSelector(directory, recursive=True, allow_not_found=True)
    return sorted(f.path for f in fs.get_file_info(selector) if f.type == pafs.FileType.File)
