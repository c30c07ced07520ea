"""The few helpers every package shares: atomic file writes, the DAVIS palette, ImageNet normalisation constants,
device resolution, a process's share of a global batch, the CLIs' error contract, and running a project command
in a child process (with its own peak memory).

With the schema, this module is the project's leaf: `model`, `inference`, `dataset`, the CLIs and the scripts may
all import it, and it imports nothing of the project (so it can never close an import cycle). Each helper has this
one home; a second copy elsewhere is a bug.

Example:
    >>> with atomic_output("/tmp/xmem_common_doctest.txt") as temporary:
    ...     _ = temporary.write_text("written in one piece")
    >>> len(DAVIS_PALETTE), DAVIS_PALETTE[3:6]
    (768, b'\\x80\\x00\\x00')
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per RGB channel, of images in [0, 1]; what torchvision's trunks expect
IMAGENET_STD = (0.229, 0.224, 0.225)

PALETTE_COLOURS = 256  # an 8-bit palette PNG has 256 colours
DEFAULT_FILE_MODE = 0o666  # what open() creates before the umask is applied
_PROC_STATUS = Path("/proc/self/status")


def _voc_palette() -> bytes:
    """The PASCAL VOC / DAVIS colour map: colour i spreads the bits of i over the high bits of R, G and B."""
    palette = bytearray()
    for index in range(PALETTE_COLOURS):
        red = green = blue = 0
        bits = index
        for shift in range(7, -1, -1):
            red |= (bits & 1) << shift
            green |= ((bits >> 1) & 1) << shift
            blue |= ((bits >> 2) & 1) << shift
            bits >>= 3
        palette += bytes((red, green, blue))
    return bytes(palette)


DAVIS_PALETTE: bytes = _voc_palette()
"""768 bytes (256 RGB triplets): the palette of DAVIS and YouTube-VOS annotations; object 1 is (128, 0, 0)."""


def _umask() -> int:
    """The process's file-creation mask. Read from /proc where possible: `os.umask` can only be read by setting
    it, which would briefly give other threads (background PNG writers) a wrong mask."""
    with contextlib.suppress(OSError, ValueError):
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success give it a normal file's permissions and rename it onto
    `path`, on error delete it. A crash therefore never leaves a half-written file under the final name.

    The temporary name keeps the suffix, so writers that choose a format by extension (PIL, torch) still work.
    The final file gets the mode a plain `open(path, "w")` would give (0666 less the umask), not mkstemp's 0600:
    results are meant to be read by others.

    Raises:
        OSError: the folder cannot be created or written (the message names it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, DEFAULT_FILE_MODE & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call `write(temporary_path)` and rename the result onto `path` (see `atomic_output`)."""
    with atomic_output(path) as temporary:
        write(temporary)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8, newlines as given) to `path` atomically (see `atomic_output`)."""
    with atomic_output(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as file:
            file.write(text)


def resolve_device(device: str | torch.device | None = "auto", *,
                   default: torch.device | None = None) -> torch.device:
    """The torch device a setting names.

    Args:
        device: `auto` (or None), `cpu`, `cuda`, `cuda:N`, `mps`, or a torch.device.
        default: what `auto` means when given (e.g. the device a network already sits on); otherwise `auto`
            is the first available of cuda, mps, cpu.
    Returns:
        the device.
    Raises:
        ValueError: an unknown device string, or an accelerator that this machine does not have.
    """
    if device is None or device == "auto":
        if default is not None:
            return torch.device(default)
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {str(device)!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available here; use cpu or auto")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} asked for, but this machine has {torch.cuda.device_count()} "
                         "CUDA device(s); use cuda:0 .. cuda:N-1 or auto")
    if resolved.type == "mps" and not _mps_available():
        raise ValueError(f"device {str(device)!r} asked for, but MPS is not available here; use cpu or auto")
    return resolved


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def per_rank_batch_size(global_batch_size: int, world_size: int, *, what: str = "batch_size") -> int:
    """The share of one process of a global batch (the trainer's slice and the data sampler's batch agree on it).

    Raises:
        ValueError: the global batch is not a positive multiple of the number of processes.
    """
    if global_batch_size < 1 or global_batch_size % world_size:
        raise ValueError(f"{what}={global_batch_size} (global) must be a positive multiple of the {world_size} "
                         f"processes; change {what} or --nproc_per_node")
    return global_batch_size // world_size


# Failures a user can fix (a missing file, a bad value, an unknown key): one line, no traceback.
EXPECTED_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
                   ValueError, KeyError, TypeError)
DEBUG_FLAG = "--debug"
ERROR_PREFIX = "error: "  # how run_cli starts a command's one-line failure message
INTERRUPTED_STATUS = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
_TERMINAL_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colour / bold codes some libraries put in messages


def plain_text(message: str) -> str:
    """`message` as one plain line: terminal escape codes removed, whitespace runs (newlines too) made one space."""
    return " ".join(_TERMINAL_ESCAPE.sub("", message).split())


def run_cli(main: Callable[[list[str]], int | None], argv: list[str] | None = None, *,
            expected: tuple[type[BaseException], ...] = (), interrupted_message: str | None = None) -> int:
    """Run a command-line entry point under the project's error contract; returns the exit status.

    An expected failure (`EXPECTED_ERRORS`, or one of `expected`) prints `error: <message>` on stderr as one line
    and returns 1; any other exception is a bug and propagates with its traceback. With `--debug` among the
    arguments (removed before `main` sees them) expected failures show their traceback too.

    Args:
        main: takes the argument list (without the program name); returns an exit status or None (= 0).
        argv: the arguments; default sys.argv[1:].
        expected: further exception types the command expects (e.g. a torchrun job's dead rank).
        interrupted_message: when given, Ctrl-C (KeyboardInterrupt) prints it as one line on stderr and returns
            INTERRUPTED_STATUS instead of a traceback (for commands whose work survives an interruption).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in arguments
    arguments = [argument for argument in arguments if argument != DEBUG_FLAG]
    try:
        status = main(arguments)
    except EXPECTED_ERRORS + tuple(expected) as error:
        if debug:
            raise
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        print(f"{ERROR_PREFIX}{plain_text(message)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if interrupted_message is None or debug:
            raise
        print(interrupted_message, file=sys.stderr)
        return INTERRUPTED_STATUS
    return 0 if status is None else int(status)


# ------------------------------------------------------------------------------ project commands as child processes
REPOSITORY = Path(__file__).resolve().parents[1]  # the checkout: train.py, eval.py and scripts/ are under it
BYTES_PER_MB = 2**20
RSS_UNIT_BYTES = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, kilobytes on Linux
OUTPUT_SHOWN = "shown"  # the child writes to this process's terminal
OUTPUT_CAPTURED = "captured"  # stdout, then stderr, are collected into ChildRun.output
STDERR_TEED = "stderr_teed"  # stderr is shown live and its tail kept in ChildRun.output (a CLI's last error line)
CHILD_READ_BYTES = 4096
CHILD_TAIL_BYTES = 4096  # enough to hold a CLI's one-line error message


def peak_rss_mb(max_rss: int) -> float:
    """A `ru_maxrss` value (resource.getrusage, os.wait4) in MB, whatever the platform's unit."""
    return max_rss * RSS_UNIT_BYTES / BYTES_PER_MB


def project_command(script: str, *arguments: str) -> list[str]:
    """The argv that runs the project CLI `script` (its path under the checkout, e.g. "eval.py" or
    "scripts/evaluation/visualize.py") with this interpreter."""
    return [sys.executable, str(REPOSITORY / script), *arguments]


@dataclasses.dataclass(frozen=True)
class ChildRun:
    """A finished child process: its argv, exit status, what was kept of its output (see `run_child`) and its own
    peak RSS in MB (None where the OS cannot report a child's own, e.g. Windows). On Linux the kernel also counts
    the caller's RSS at the spawn (the two share memory until the child starts the command), so the figure is the
    child's own where the child outgrows its caller, as eval.py does the project's launchers (quickstart,
    run_ablations, study_curve)."""

    command: tuple[str, ...]
    returncode: int
    output: str
    peak_memory_mb: float | None

    def last_line(self) -> str:
        """The last non-empty line of the kept output (a progress bar's carriage return ends a line too), stripped
        and without run_cli's ERROR_PREFIX: a failed project command's one-line reason."""
        lines = [line.strip() for line in self.output.replace("\r", "\n").splitlines()]
        return next((line for line in reversed(lines) if line), "").removeprefix(ERROR_PREFIX)


def _read_from_start(stream) -> bytes:
    stream.seek(0)
    return stream.read()


def run_child(command: Sequence[str], *, output: str = OUTPUT_SHOWN, env_extra: Mapping[str, str] | None = None,
              cwd: str | os.PathLike | None = None, check: bool = False) -> ChildRun:
    """Run `command` (e.g. `project_command("eval.py", ...)`) in a child process and wait for it.

    Project commands are run, never imported by one another, and a process of its own gives each run a peak
    memory that is not its caller's.

    Args:
        output: OUTPUT_SHOWN, OUTPUT_CAPTURED or STDERR_TEED (the last CHILD_TAIL_BYTES of stderr are kept).
        env_extra: variables set on top of this process's environment.
        cwd: the child's working directory (default: this process's).
        check: raise on a non-zero exit status.

    Raises:
        subprocess.CalledProcessError: with `check`, the child failed (its output, when kept, is attached).
    """
    if output not in (OUTPUT_SHOWN, OUTPUT_CAPTURED, STDERR_TEED):
        raise ValueError(f"output {output!r} is invalid; expected {OUTPUT_SHOWN}, {OUTPUT_CAPTURED} or {STDERR_TEED}")
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        # Captured output goes to files, not pipes: a child filling one pipe while this process reads the other would
        # block both; stdout and stderr stay apart, so that a line of one is never cut by the other.
        captured = output == OUTPUT_CAPTURED
        process = subprocess.Popen(list(command), cwd=cwd, env={**os.environ, **(env_extra or {})},
                                   stdout=stdout if captured else None,
                                   stderr=stderr if captured else subprocess.PIPE if output == STDERR_TEED else None)
        kept = b""
        if output == STDERR_TEED:
            with process.stderr:
                while chunk := process.stderr.read1(CHILD_READ_BYTES):
                    sys.stderr.buffer.write(chunk)
                    sys.stderr.flush()
                    kept = (kept + chunk)[-CHILD_TAIL_BYTES:]
        peak_memory_mb = None
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            peak_memory_mb = peak_rss_mb(usage.ru_maxrss)
        else:
            process.wait()
        if captured:
            kept = _read_from_start(stdout) + _read_from_start(stderr)
    run = ChildRun(tuple(command), process.returncode, kept.decode(errors="replace"), peak_memory_mb)
    if check and run.returncode:
        raise subprocess.CalledProcessError(run.returncode, list(command), run.output)
    return run
