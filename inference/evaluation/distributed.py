"""Distributed evaluation plumbing: torchrun's environment, each rank's device, and a key-value protocol through
the job's store that exchanges the work split and the results and names a rank that dies.

Evaluation needs no tensor collectives: ranks share a work split (rank 0 -> all) and their results (all ->
rank 0). Both go through the TCP key-value store that torchrun's rendezvous provides (`torch.distributed.
rendezvous("env://")`: hosted by rank 0, or by the torchrun agent), so the same code runs on CPUs and GPUs and no
NCCL watchdog is involved. A Gloo or NCCL collective with a killed peer fails with "connection closed by peer" at
best, and hangs until its timeout at worst, without saying which rank; here every rank beats a heartbeat counter
in the store from a background thread and watches the others' counters. A rank whose counter stops for
`timeout_s` before it posted its results is named in one message that every rank raises, so the job ends
instead of hanging. Keys (under one prefix per torchrun restart):
    heartbeat/<rank>  counter, +1 every `heartbeat_s`
    split             JSON posted by rank 0: rank -> its video names
    result/<rank>     JSON posted by a rank when its share is done (its records, failures, peak memory)
    abort             the first failure anyone saw, with the rank it names
    abort_seen        counter: ranks that have read `abort` (rank 0, which may host the store, waits for them)
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.distributed as dist

from configs.common import resolve_device

logger = logging.getLogger(__name__)

WORLD_SIZE_VARIABLE = "WORLD_SIZE"
RANK_VARIABLE = "RANK"
LOCAL_RANK_VARIABLE = "LOCAL_RANK"
RESTART_VARIABLE = "TORCHELASTIC_RESTART_COUNT"  # keys of a restarted torchrun job must not meet the old ones
STORE_PREFIX = "xmem_eval"
HEARTBEATS_PER_TIMEOUT = 4  # a live rank beats this many times within the timeout
MAX_HEARTBEAT_SECONDS = 5.0
POLL_SECONDS = 0.2  # how often a waiting rank looks for the key it waits for
LINGER_HEARTBEATS = 3  # after a failure rank 0 waits at most this many heartbeats for the others to read it


class RankFailedError(RuntimeError):
    """Another rank of the job died or failed (the message names it); this rank stops too."""


def launched_distributed() -> bool:
    """Whether this process is one of several started by torchrun (WORLD_SIZE > 1 in its environment)."""
    return int(os.environ.get(WORLD_SIZE_VARIABLE, "1")) > 1


def rank_device(setting: str, local_rank: int) -> torch.device:
    """The device of one rank: `cuda:LOCAL_RANK` for `auto` (with CUDA) or `cuda`, else the CPU.

    Raises:
        ValueError: a device with an explicit index (`cuda:1`), which would put several ranks on one GPU, or a
            device this machine lacks.
    """
    if ":" in setting:
        raise ValueError(f"eval.device={setting!r} under torchrun: every rank would use that one device; use "
                         "eval.device=auto or cuda (rank i uses cuda:LOCAL_RANK) or cpu")
    device = resolve_device(setting)
    if device.type != "cuda":
        return torch.device("cpu") if device.type == "cpu" or setting == "auto" else device
    if local_rank >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} CUDA "
                         "device(s); start at most that many processes per node (torchrun --nproc_per_node)")
    return torch.device("cuda", local_rank)


@dataclass
class RankGroup:
    """This process's place in a distributed evaluation and its link to the others (see the module docstring).

    Use `join()`; as a context manager it stops the heartbeat on exit and, on an exception, tells the other
    ranks that this one failed (so they stop instead of waiting).

    Attributes:
        rank, world_size, local_rank: from torchrun's environment.
        device: this rank's device (`rank_device`).
        timeout_s: seconds without a heartbeat after which a rank counts as dead; also the longest wait for the
            store itself.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    timeout_s: float
    _store: Any = field(repr=False)
    _failure: Optional[str] = field(default=None, repr=False)
    _dead: set[int] = field(default_factory=set, repr=False)
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: Optional[threading.Thread] = field(default=None, repr=False)

    @classmethod
    def join(cls, device_setting: str, timeout_s: float) -> "RankGroup":
        """Connect to the job's store from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
        MASTER_PORT) and start beating.

        Raises:
            ValueError: timeout_s <= 0, a bad device setting, or the environment lacks a variable (named).
            RankFailedError: the store cannot be reached within `timeout_s`.
        """
        if timeout_s <= 0:
            raise ValueError(f"eval.rank_timeout_s={timeout_s}: expected a positive number of seconds")
        missing = [name for name in (RANK_VARIABLE, WORLD_SIZE_VARIABLE, "MASTER_ADDR", "MASTER_PORT")
                   if name not in os.environ]
        if missing:
            raise ValueError(f"distributed evaluation needs {', '.join(missing)} in the environment; start it "
                             "with torchrun --nproc_per_node N eval.py ...")
        rank, world_size = int(os.environ[RANK_VARIABLE]), int(os.environ[WORLD_SIZE_VARIABLE])
        local_rank = int(os.environ.get(LOCAL_RANK_VARIABLE, "0"))
        device = rank_device(device_setting, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)  # kernels and libraries that use the current device use this rank's
        timeout = datetime.timedelta(seconds=timeout_s)
        try:
            store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world_size, timeout=timeout))
        except (RuntimeError, ValueError) as error:
            raise RankFailedError(f"rank {rank}: cannot reach the job's store at {os.environ['MASTER_ADDR']}:"
                                  f"{os.environ['MASTER_PORT']} within {timeout_s:g} s ({error})") from None
        prefix = f"{STORE_PREFIX}/{os.environ.get(RESTART_VARIABLE, '0')}/"
        group = cls(rank, world_size, local_rank, device, timeout_s, dist.PrefixStore(prefix, store))
        group._thread = threading.Thread(target=group._beat, name=f"heartbeat-rank{rank}", daemon=True)
        group._thread.start()
        return group

    @property
    def _heartbeat_s(self) -> float:
        return min(MAX_HEARTBEAT_SECONDS, self.timeout_s / HEARTBEATS_PER_TIMEOUT)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------------------------------ liveness

    def _beat(self) -> None:
        """Background loop: beat, pick up an abort, and watch the other ranks' heartbeats."""
        interval = self._heartbeat_s
        last_seen = {peer: (-1, time.monotonic()) for peer in range(self.world_size) if peer != self.rank}
        while not self._finished.wait(interval):
            try:
                self._store.add(f"heartbeat/{self.rank}", 1)
                if self._store.check(["abort"]):
                    if self._failure is None:
                        self._failure = self._store.get("abort").decode()
                        self._store.add("abort_seen", 1)
                    continue
                now = time.monotonic()
                for peer, (count, since) in last_seen.items():
                    if self._store.check([f"result/{peer}"]):
                        continue
                    current = self._store.add(f"heartbeat/{peer}", 0)
                    if current != count:
                        last_seen[peer] = (current, now)
                    elif now - since > self.timeout_s:
                        self._dead.add(peer)
                        self._fail(f"rank {peer} stopped responding (no heartbeat for {self.timeout_s:g} s, "
                                   "eval.rank_timeout_s) before it finished its videos: it was killed or crashed, "
                                   "see its log; rerun to redo its unfinished videos")
            except (RuntimeError, ValueError) as error:  # the store is gone: its host (rank 0 or torchrun) died
                if not self._finished.is_set():
                    self._failure = self._lost_store_message(error)
                return

    def _lost_store_message(self, error: BaseException) -> str:
        return (f"rank {self.rank} lost the job's store at {os.environ.get('MASTER_ADDR')}:"
                f"{os.environ.get('MASTER_PORT')}: rank 0 (its host) or the launcher died; see rank 0's log "
                f"({' '.join(str(error).split())})")

    def _fail(self, message: str) -> None:
        """Record a failure and tell every rank (the first message posted wins)."""
        self._store.compare_set("abort", "", message)
        self._failure = self._store.get("abort").decode()
        self._store.add("abort_seen", 1)

    def _linger_for_the_others(self, interval: float) -> None:
        """Rank 0 may host the store: after a failure, keep it up until every live rank has read the abort
        message (or a few heartbeats passed), so that they report the failure itself, not a lost store."""
        deadline = time.monotonic() + LINGER_HEARTBEATS * interval
        live = self.world_size - len(self._dead)
        try:
            while self._store.add("abort_seen", 0) < live and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
        except (RuntimeError, ValueError):
            return

    def check(self) -> None:
        """Raise if any rank of the job failed (call between videos).

        Raises:
            RankFailedError: with the message naming the rank.
        """
        if self._failure is not None:
            raise RankFailedError(self._failure)

    def _wait_for(self, key: str) -> bytes:
        """The value of `key` once some rank has set it; meanwhile raise if a rank fails."""
        try:
            while not self._store.check([key]):
                self.check()
                time.sleep(POLL_SECONDS)
            return self._store.get(key)
        except (RuntimeError, ValueError) as error:
            if isinstance(error, RankFailedError):
                raise
            raise RankFailedError(self._lost_store_message(error)) from None

    def _post(self, key: str, value: str) -> None:
        try:
            self._store.set(key, value)
        except (RuntimeError, ValueError) as error:
            raise RankFailedError(self._lost_store_message(error)) from None

    # ------------------------------------------------------------------------------------------ exchange

    def share_split(self, shares: Optional[list[list[str]]]) -> list[str]:
        """Rank 0 posts every rank's videos (`shares`, rank -> names); every rank gets its own.

        Args:
            shares: on rank 0 the split (one list per rank); ignored elsewhere.
        Returns:
            this rank's video names.
        Raises:
            RankFailedError: a rank died meanwhile.
        """
        if self.is_main:
            if shares is None or len(shares) != self.world_size:
                raise ValueError(f"rank 0 must share {self.world_size} lists of videos, got {shares!r}")
            self._post("split", json.dumps(shares))
        return list(json.loads(self._wait_for("split"))[self.rank])

    def gather_results(self, result: dict[str, Any]) -> Optional[list[dict[str, Any]]]:
        """Post this rank's result (JSON-compatible); rank 0 waits for every rank's and returns them in rank order.

        Returns:
            on rank 0, rank -> result; None on the other ranks (which may exit right after).
        Raises:
            RankFailedError: a rank died before posting its result (named).
        """
        self._post(f"result/{self.rank}", json.dumps(result, default=str))
        if not self.is_main:
            return None
        return [json.loads(self._wait_for(f"result/{peer}"))
                for peer in range(self.world_size)]

    def close(self, error: Optional[BaseException] = None) -> None:
        """Stop beating; with `error`, first tell the other ranks that this rank failed."""
        if error is not None and not isinstance(error, RankFailedError):
            try:
                self._fail(f"rank {self.rank} failed: {type(error).__name__}: {error}")
            except (RuntimeError, ValueError):
                logger.warning("rank %d could not tell the others that it failed", self.rank)
        if self.is_main and self._failure is not None:
            self._linger_for_the_others(self._heartbeat_s)
        self._finished.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> "RankGroup":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        self.close(error)
