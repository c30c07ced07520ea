"""Overlapped I/O for evaluation: frames read ahead of the compute, results written behind it.

Decoding a JPEG frame, reading a mask and encoding a PNG take milliseconds each and mostly release the GIL (PIL,
zlib), as do torch's kernels, so one background thread on each side lets them run during the network's work.
Both sides are bounded queues: at most `depth` frames wait to be processed and at most `max_pending` writes wait
to be done, so memory stays flat however long the video. Every write still goes through
`configs.common.atomic_output`, so a killed process never leaves a half-written file.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
POLL_SECONDS = 0.1  # how often a blocked background thread checks whether it was told to stop
_END = object()  # the producer's last message: the source is exhausted (or raised, with the error beside it)


def read_ahead(items: Iterable[Item], depth: int) -> Iterator[Item]:
    """Iterate `items` in a background thread, up to `depth` items ahead of the consumer.

    The items come in order; an exception raised by the source is raised here, at the item where it happened
    (after the items before it). Leaving the loop early (break, an exception, closing the generator) stops the
    thread and closes the source.

    Args:
        items: any iterable, e.g. `EvalVideo.frames()` (reading a frame and its mask is the work moved ahead).
        depth: the most items read but not yet consumed; 0 reads in the caller's thread (no overlap).
    Raises:
        ValueError: depth < 0.
    """
    if depth < 0:
        raise ValueError(f"read-ahead depth {depth}: expected 0 (off) or more frames")
    if depth == 0:
        yield from items
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(message: tuple[Any, Optional[BaseException]]) -> bool:
        while not stop.is_set():
            try:
                buffer.put(message, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not offer((item, None)):
                    return
            offer((_END, None))
        except BaseException as error:  # handed to the consumer, who raises it
            offer((_END, error))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


class BackgroundWriter:
    """Runs write calls in one background thread, in submission order, with at most `max_pending` waiting.

    `submit` blocks while the queue is full (so memory stays bounded). The first error a write raises is raised
    in the caller by the next `submit`, `flush` or `close` (once), and the writes queued after it are dropped:
    nothing is written after a failure until the caller has seen it. Arrays handed to `submit` must not be
    modified afterwards.

    Example:
        with BackgroundWriter(8) as background:
            background.submit(writer.write_mask, video, frame, mask, palette)
            background.flush()  # before marking the video finished

    Args:
        max_pending: writes that may wait; 0 runs every write in the caller's thread at `submit`.
    Raises:
        ValueError: max_pending < 0.
    """

    def __init__(self, max_pending: int):
        if max_pending < 0:
            raise ValueError(f"write queue length {max_pending}: expected 0 (off) or more writes")
        self._synchronous = max_pending == 0
        self._tasks: queue.Queue = queue.Queue(maxsize=max(max_pending, 1))
        self._error: Optional[BaseException] = None
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        if not self._synchronous:
            self._thread = threading.Thread(target=self._work, name="background-writer", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            try:
                if task is None:
                    return
                with self._lock:
                    failed = self._error is not None
                if not failed:
                    function, arguments = task
                    function(*arguments)
            except BaseException as error:  # kept for the caller, who raises it
                with self._lock:
                    if self._error is None:
                        self._error = error
            finally:
                self._tasks.task_done()

    def _raise_error(self) -> None:
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def submit(self, function: Callable[..., object], *arguments: Any) -> None:
        """Queue `function(*arguments)` (or run it now when synchronous); first raises an earlier write's error."""
        self._raise_error()
        if self._thread is None and not self._synchronous:
            raise RuntimeError("BackgroundWriter.submit after close")
        if self._synchronous:
            function(*arguments)
            return
        self._tasks.put((function, arguments))

    def flush(self) -> None:
        """Wait until every submitted write is done; raise the first error among them (if not raised yet)."""
        if self._thread is not None:
            self._tasks.join()
        self._raise_error()

    def close(self) -> None:
        """Finish the queued writes and stop the thread; raise the first unreported error. Idempotent."""
        if self._thread is not None:
            self._tasks.put(None)
            self._thread.join()
            self._thread = None
        self._raise_error()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is None:
            self.close()
            return
        try:  # the body's exception wins; a write error behind it is secondary, logged
            self.close()
        except Exception as write_error:  # noqa: BLE001 - already failing with the body's exception
            logger.warning("a background write also failed: %s: %s", type(write_error).__name__, write_error)


class ReadAheadVideo:
    """An evaluation video (e.g. `EvalVideo`) whose `frames()` reads up to `depth` frames (and their masks) ahead
    in a background thread; every other attribute is the video's own."""

    def __init__(self, video: Any, depth: int):
        self._video = video
        self._depth = depth

    def __getattr__(self, name: str) -> Any:
        return getattr(self._video, name)

    def __len__(self) -> int:
        return len(self._video)

    def frames(self) -> Iterator[Any]:
        """The video's frames, read ahead (errors raised at the frame where reading failed)."""
        return read_ahead(self._video.frames(), self._depth)


class WriteBehind:
    """A result writer (e.g. `ResultWriter`) whose per-frame `write_mask` and `write_scores` run in `background`;
    `flush()` before anything that must see the files (marking a video finished, deleting a failed one)."""

    def __init__(self, writer: Any, background: BackgroundWriter):
        self._writer = writer
        self._background = background

    def write_mask(self, video: str, frame: str, mask: Any, palette: Optional[bytes]) -> None:
        self._background.submit(self._writer.write_mask, video, frame, mask, palette)

    def write_scores(self, video: str, frame: str, prob: Any, labels: Any) -> None:
        self._background.submit(self._writer.write_scores, video, frame, prob, labels)

    def flush(self) -> None:
        """Wait for the queued writes; raise the first error among them."""
        self._background.flush()
