"""What keeps an evaluation's outputs away from its inputs and from another run: the output folder is checked
against every input before anything is written, and one run at a time holds the folder's lock.

The lock is an advisory `fcntl.flock` on `<out>/.eval.lock`, held from before the first output until the run
ends. The operating system drops it when the process exits in any way (kill -9 included), so a killed run never
blocks the next; the file is left in place (deleting it could let two runs lock two different files). While held,
the file names its holder (pid, host, start time), which a refused run prints.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Iterable, Iterator, Optional

LOCK_FILE = ".eval.lock"
LOCK_FILE_MODE = 0o644


class OutputFolderBusyError(RuntimeError):
    """Another run holds the output folder's lock (the message names it)."""


def _relation(output: Path, source: Path) -> Optional[str]:
    """How the resolved output folder meets a resolved input path, or None if they do not meet."""
    if output == source:
        return "is"
    if source.is_relative_to(output):
        return "contains"
    if output.is_relative_to(source):
        return "lies inside"
    return None


def check_output_outside_inputs(output_dir: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output folder that is, contains or lies inside an input (symbolic links followed on both sides).

    Args:
        output_dir: the output folder (it need not exist yet).
        inputs: the files and folders the run reads (dataset frame / mask / ground-truth folders, the checkpoint).
    Raises:
        ValueError: one line naming the output folder, the input and where each resolves to when that differs.
    """
    output = Path(output_dir)
    resolved_output = output.resolve()
    for source in inputs:
        source = Path(source)
        resolved_source = source.resolve()
        relation = _relation(resolved_output, resolved_source)
        if relation is None:
            continue
        shown_output = output if resolved_output == output.absolute() else f"{output} (= {resolved_output})"
        shown_source = source if resolved_source == source.absolute() else f"{source} (= {resolved_source})"
        raise ValueError(f"output folder {shown_output} {relation} the input {shown_source}; writing there would "
                         "overwrite or delete what the run reads: pass --output naming a folder outside the dataset")


def _holder_description(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on host {holder['host']}, started {holder['started']}"
    except (ValueError, TypeError, KeyError):
        return "a process that has not written its name yet"


def _busy_error(lock_path: Path) -> OutputFolderBusyError:
    holder = _holder_description(lock_path.read_text(errors="replace"))
    return OutputFolderBusyError(f"output folder {lock_path.parent} is in use by another eval.py run ({holder}); "
                                 "wait for it to end or pass another --output")


def check_output_not_locked(output_dir: str | os.PathLike) -> None:
    """Refuse early, writing nothing, when another run holds the folder's lock (a look only: `OutputLock` takes it).

    Raises:
        OutputFolderBusyError: another process holds the lock (the message names it).
    """
    path = Path(output_dir) / LOCK_FILE
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # no lock file (or an unreadable one): nobody holds it, or OutputLock will say so
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy_error(path) from None
    finally:
        os.close(descriptor)


class OutputLock:
    """The exclusive advisory lock of one output folder, as a context manager (the folder must exist).

    Raises (on enter):
        OutputFolderBusyError: another process holds it (the message names it: pid, host, start time).
    """

    def __init__(self, output_dir: str | os.PathLike):
        self.path = Path(output_dir) / LOCK_FILE
        self._descriptor: Optional[int] = None

    def __enter__(self) -> "OutputLock":
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, LOCK_FILE_MODE)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise _busy_error(self.path) from None
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(descriptor, 0)
        os.write(descriptor, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                         "started": started}).encode())
        self._descriptor = descriptor
        return self

    def __exit__(self, *exc_info) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the descriptor releases the lock
            self._descriptor = None


@contextlib.contextmanager
def held_output_folder(output_dir: str | os.PathLike, *, lock: bool) -> Iterator[None]:
    """Make the output folder and hold its `OutputLock` for the body (with `lock`; otherwise do nothing: under
    torchrun rank 0 holds the job's lock for every rank).

    Raises:
        OutputFolderBusyError: another process holds the lock.
    """
    if not lock:
        yield
        return
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    with OutputLock(output_dir):
        yield
