"""Listing a corpus: the files under an input that are read, and every entry there that is not, with why.

An entry the listing does not read (unsupported format, hidden or ``_``-prefixed, a second path to a file or
directory already listed, a broken link, a name that is not UTF-8) is a :class:`SkippedFile`, written by
:func:`reject_skipped` to ``_rejects/stage=corpus/`` with its reason; bonito-ray's own outputs
(``_rejects``, ``_manifest.json``, ...) are the one exception.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections import Counter
from dataclasses import dataclass

import pyarrow.fs as pafs

from bonito_ray.corpus.formats import CORPUS_SUFFIXES, CorpusError, corpus_format
from bonito_ray.rejects import (DUPLICATE_PATH, HIDDEN_FILE, INVALID_UTF8, UNREADABLE_FILE, UNSUPPORTED_FORMAT,
                                write_rejects)
from bonito_ray.schema import CORPUS_STAGE, OWNED_ENTRIES, is_utf8, stable_id
from bonito_ray.storage import display_uri, resolve_filesystem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedFile:
    """A file or directory under the input that is not read, and why."""

    path: str  # as the input's filesystem names it
    reason: str
    detail: str


@dataclass(frozen=True)
class CorpusListing:
    """The files to read under an input, and every entry there that will not be read."""

    fs: pafs.FileSystem
    files: list[str]
    skipped: tuple[SkippedFile, ...] = ()


def list_corpus_files(uri: str, s3_endpoint: str | None = None) -> CorpusListing:
    """The corpus files at ``uri`` (a file, a directory/prefix searched recursively, or a glob).

    An existing path is always taken as itself, even when it holds glob characters.
    """
    fs, path, pattern = _resolve_input(uri, s3_endpoint)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise CorpusError(f"input {pattern or uri} does not exist")
    if info.type == pafs.FileType.File:
        if corpus_format(path) is None:
            raise CorpusError(f"input {uri} is not a corpus file; supported: {', '.join(CORPUS_SUFFIXES)}")
        return CorpusListing(fs, [path])
    found, skipped = _scan_local(path) if isinstance(fs, pafs.LocalFileSystem) else _scan(fs, path)
    in_scope = (lambda p: True) if pattern is None else (
        lambda p: fnmatch.fnmatchcase(display_uri(pattern, p), _absolute(pattern)))
    files = []
    for file in filter(in_scope, found):
        name = file.rsplit("/", 1)[-1]
        if name.startswith((".", "_")):
            skipped.append(SkippedFile(file, HIDDEN_FILE, "name starts with '.' or '_'"))
        elif corpus_format(file) is None:
            skipped.append(SkippedFile(file, UNSUPPORTED_FORMAT, f"supported: {', '.join(CORPUS_SUFFIXES)}"))
        else:
            files.append(file)
    if pattern is not None:  # a glob names files, not the directories beside them
        skipped = [s for s in skipped if in_scope(s.path)]
    skipped.sort(key=lambda s: s.path)
    if not files:
        raise CorpusError(f"no corpus files ({', '.join(CORPUS_SUFFIXES)}) under {pattern or uri}"
                          + (f"; not read: {_describe(skipped)}" if skipped else ""))
    return CorpusListing(fs, sorted(files), tuple(skipped))


def _resolve_input(uri: str, s3_endpoint: str | None) -> tuple[pafs.FileSystem, str, str | None]:
    """(filesystem, path to list, glob pattern or None) for an input URI."""
    fs, path = resolve_filesystem(uri, s3_endpoint)
    if not any(c in uri for c in "*?[") or fs.get_file_info(path).type != pafs.FileType.NotFound:
        return fs, path, None
    base = uri[: min(uri.find(c) for c in "*?[" if c in uri)].rsplit("/", 1)[0]
    fs, path = resolve_filesystem(base, s3_endpoint)
    return fs, path, uri


def _absolute(uri: str) -> str:
    return uri if "://" in uri else os.path.abspath(uri)


def _describe(skipped: list[SkippedFile]) -> str:
    counts = Counter(s.reason for s in skipped)
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) + f" (e.g. {skipped[0].path})"


def _scan(fs: pafs.FileSystem, root: str) -> tuple[list[str], list[SkippedFile]]:
    """Files under ``root`` on an object store (no links there), and the hidden directories not read."""
    files, hidden = [], {}
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type != pafs.FileType.File:
            continue
        parts = info.path[len(root) + 1 :].split("/")
        directory = next((i for i, part in enumerate(parts[:-1]) if _is_hidden(part)), None)
        if directory is None:
            if not _is_own_output(parts[-1]):
                files.append(info.path)
        elif not _is_own_output(parts[directory]):
            path = "/".join([root, *parts[: directory + 1]])
            hidden[path] = SkippedFile(path, HIDDEN_FILE, "a directory whose name starts with '.' or '_'")
    return files, list(hidden.values())


def _scan_local(root: str) -> tuple[list[str], list[SkippedFile]]:
    """Files under ``root`` on local disk, each real file and directory once.

    Links are followed, but a directory or file whose real identity (device, inode) was met before
    is not entered again: a symlink loop ends, and no file is listed under two names.
    """
    status = os.stat(root)
    files, skipped, seen = [], [], {(status.st_dev, status.st_ino)}
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name, reverse=True)
        except OSError as err:
            skipped.append(SkippedFile(directory, UNREADABLE_FILE, f"cannot list: {err.strerror or err}"))
            continue
        for entry in entries:
            if _is_own_output(entry.name):
                continue
            path = f"{directory}/{entry.name}"
            if not is_utf8(entry.name):  # pyarrow cannot open it, nor can a reject's source column hold it
                skipped.append(SkippedFile(os.fsencode(path).decode("utf-8", errors="replace"), INVALID_UTF8,
                                           f"a name that is not UTF-8: {os.fsencode(entry.name)!r}"))
                continue
            try:
                status = entry.stat()  # follows links
            except OSError as err:
                skipped.append(SkippedFile(path, UNREADABLE_FILE, f"cannot read: {err.strerror or err}"
                                           + (" (a broken link)" if entry.is_symlink() else "")))
                continue
            is_dir = entry.is_dir()
            if is_dir and _is_hidden(entry.name):
                skipped.append(SkippedFile(path, HIDDEN_FILE, "a directory whose name starts with '.' or '_'"))
                continue
            identity = (status.st_dev, status.st_ino)
            if identity in seen:
                skipped.append(SkippedFile(path, DUPLICATE_PATH, f"a link to {os.path.realpath(path)}, "
                                           "already listed under another name"))
                continue
            seen.add(identity)
            if is_dir:
                stack.append(path)
            elif entry.is_file():
                files.append(path)
            else:
                skipped.append(SkippedFile(path, UNSUPPORTED_FORMAT, "not a regular file"))
    return files, skipped


def _is_hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _is_own_output(name: str) -> bool:
    """A hidden entry bonito-ray writes next to a dataset (``_rejects``, ``.staging``, ...): not worth a reject."""
    return _is_hidden(name) and any(fnmatch.fnmatchcase(name, pattern) for pattern in OWNED_ENTRIES)


def reject_skipped(input_uri: str, skipped: tuple[SkippedFile, ...] | list[SkippedFile], output_uri: str,
                   s3_endpoint: str | None = None) -> None:
    """Record the entries under the input that are not read as corpus rejects of the run at ``output_uri``."""
    if not skipped:
        return
    logger.warning("corpus: %d file(s) under %s not read: %s", len(skipped), input_uri, _describe(list(skipped)))
    write_rejects(output_uri, CORPUS_STAGE, [
        {"source": display_uri(input_uri, s.path), "reason": s.reason, "detail": s.detail} for s in skipped],
        s3_endpoint)


def input_fingerprint(fs: pafs.FileSystem, files: list[str]) -> str:
    """A hash of the corpus files' locations, sizes and modification times."""
    return stable_id(*(f"{i.path}|{i.size}|{i.mtime_ns}" for i in fs.get_file_info(files)))
