"""Filesystem resolution: local paths and any URI that pyarrow knows (s3://, gs://, abfs://, ...)."""

from __future__ import annotations

import os

import pyarrow.fs as pafs


def resolve_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return the filesystem and the path inside it for a local path or a URI."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    return pafs.FileSystem.from_uri(uri)


def display_uri(uri: str, path: str) -> str:
    """The URI form of ``path`` (as pyarrow lists it) on the filesystem ``uri`` points into."""
    if "://" not in uri:
        return path
    return uri.split("://", 1)[0] + "://" + path


def join(base: str, *parts: str) -> str:
    """Join path segments with '/' (object stores and local POSIX paths alike)."""
    return "/".join([base.rstrip("/"), *parts])
