"""Small file operations on a local path or a URI (anything ``resolve_filesystem`` knows)."""

from __future__ import annotations

import os

import pyarrow.fs as pafs

from bonito_ray.storage import resolve_filesystem, write_bytes


def read_text(uri: str) -> str | None:
    """The text of the file at ``uri``, or None when there is none."""
    fs, path = resolve_filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as stream:
        return stream.read().decode("utf-8")


def write_text(uri: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``uri``, whole or not at all."""
    write_bytes(*resolve_filesystem(uri), text.encode("utf-8"))


def upload_dir(local_dir: str, uri: str) -> None:
    """Copy the local directory ``local_dir`` to ``uri`` (replacing files of the same name)."""
    fs, path = resolve_filesystem(uri)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(os.path.abspath(local_dir), path, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)


def localize(uri: str, scratch_dir: str) -> str:
    """A local directory holding the directory at ``uri``: itself when local, else a copy in ``scratch_dir``."""
    if "://" not in uri:
        return uri
    fs, path = resolve_filesystem(uri)
    pafs.copy_files(path, scratch_dir, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return scratch_dir


def delete(uri: str) -> None:
    """Remove the file or directory (with everything under it) at ``uri``, if there is one."""
    fs, path = resolve_filesystem(uri)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif kind == pafs.FileType.File:
        fs.delete_file(path)
