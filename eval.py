"""Evaluate an XMem checkpoint on a benchmark: read videos, segment them frame by frame, write and score the results.

Usage (the original eval.py flags keep working; `--config` takes a preset, `key=value` overrides anything):
    python eval.py --model saves/XMem.pth --dataset D17 --d17_path ../DAVIS/2017 --output ../output/d17
    python eval.py --config eval/y19 --y19_path ../YouTube inference.mem_every=3 --size 600
    python eval.py --dataset G --generic_path my_videos --size -1 --save_scores --flip

On several GPUs or machines, start it with torchrun (each rank evaluates a share of the videos balanced by frames x
pixels on cuda:LOCAL_RANK, or the CPU; rank 0 writes the global outputs and the report):
    torchrun --nproc_per_node 4 eval.py --model saves/XMem.pth --dataset Y19 --y19_path ../YouTube

Outputs are described in `dataset/writers.py`; the output folder never meets an input and one run at a time writes
it (`dataset/output_guard.py`). A rerun skips finished videos unless `--overwrite`; each finished video records
the settings that made it (configs/output_settings.py), and a rerun with other settings refuses, naming what
changed (`--overwrite` redoes every video), so one folder never mixes settings; a finished video whose inputs
changed (`dataset/input_fingerprint.py`) is redone, with a warning. At the end a
report gives J&F / J / F when the split has ground truth (DAVIS 2016/2017 val, Long-time Video, generic folders
with annotations beyond the first frame), the FPS without data loading and the peak memory. YouTube-VOS, DAVIS
test-dev and LVOS are scored by their servers / toolkits, from the zip or folder written here.

A training snapshot's sidecar `<checkpoint>.yaml` (the `model:` switches it was trained with) is applied
(configs/sidecar.py). Errors that stop the whole run print one `error:` line and exit 1 (`--debug` shows the
traceback); a video that fails or cannot be scored is reported by name and the others go on. Ctrl-C: one line,
exit status 130; finished videos are kept.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Container, Optional, Sequence

import torch
from tqdm import tqdm

from configs.common import BYTES_PER_MB, peak_rss_mb, resolve_device, run_cli
from configs.loader import add_flag_aliases, dump_config, load_config, overrides_from_flags
from configs.output_settings import changed_settings, file_sha256, output_settings
from configs.schema import Config
from configs.sidecar import apply_checkpoint_switches
from dataset.eval_datasets import Benchmark, EmptyMaskError, align_ground_truth, open_benchmark
from dataset.image_io import read_mask_ids
from dataset.input_fingerprint import changed_videos
from dataset.output_guard import (OutputFolderBusyError, check_output_not_locked, check_output_outside_inputs,
                                  held_output_folder)
from dataset.overlapped_io import BackgroundWriter, ReadAheadVideo, WriteBehind
from dataset.work_split import WorkSplit, split_work, video_work
from dataset.writers import ResultWriter, check_output_folder
from inference.evaluation.distributed import RankFailedError, RankGroup, launched_distributed
from inference.evaluation.folder_evaluation import list_predicted_sequences, score_sequences
from inference.evaluation.metrics import MODE_APPEARANCE, MODE_DAVIS, EvaluationResults, ForeignObjectError
from inference.evaluation.report_page import VideoSources, run_header, write_page_or_warn, write_run_page
from inference.evaluation.run_summary import SUMMARY_FILE, RunSummary, largest_memory, rate
from inference.inference_core import amp_enabled
from inference.resize import resized_shape
from inference.video_runner import run_video
from model.acceleration import optimize_network
from model.checkpoint import load_network

logger = logging.getLogger("eval")

DEFAULT_OUTPUT_PATTERN = "../output/{dataset}_{split}"
CONFIG_FILE = "config.yaml"
MIN_SCORED_SEQUENCE_FRAMES = 3  # the first and last ground-truth frames are never scored
# Video errors that stop one video and let the others run (bad files, missing masks, mismatched sizes).
VIDEO_ERRORS = (FileNotFoundError, ValueError, KeyError)
SCORING_PROCESSES = 1  # scoring is cheap next to inference; one process keeps eval.py free of worker pools
SETTINGS_KEY = "settings"  # where a finished video's record keeps the settings that made it
INPUTS_KEY = "inputs"  # where it keeps the fingerprint of its inputs (dataset/input_fingerprint.py)
INTERRUPTED_MESSAGE = "interrupted; rerun to continue (the videos finished so far are kept)"
SERVER_SCORED = {
    "Y18": "YouTube-VOS 2018 is scored by its CodaLab server: upload {zip}",
    "Y19": "YouTube-VOS 2019 is scored by its CodaLab server: upload {zip}",
    "D17": "DAVIS 2017 test-dev is scored by its CodaLab server: upload {zip}",
    "LVOS1": "LVOS is scored by its toolkit (lvos-evaluation) on {output}",
    "LVOS2": "LVOS is scored by its toolkit (lvos-evaluation) on {output}",
}


def build_parser() -> argparse.ArgumentParser:
    """The command line: `--config PRESET`, the original eval.py flags (alias table) and `key=value` overrides."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML preset (path, or name under configs/, e.g. eval/d17)")
    add_flag_aliases(parser)
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="schema overrides applied last, e.g. inference.top_k=20 eval.size=600")
    parser.epilog = "--debug (anywhere): show the traceback of an error"
    return parser


def resolve_config(argv: Optional[Sequence[str]] = None) -> Config:
    """Schema defaults <- preset <- original flags <- `key=value` overrides.

    Raises:
        FileNotFoundError, UnknownConfigKeyError, TypeError, ValueError: see `configs.loader.load_config`.
    """
    arguments = build_parser().parse_args(argv)
    return load_config(arguments.config, overrides_from_flags(arguments) + list(arguments.overrides))


def _peak_memory(device: torch.device) -> tuple[float, str]:
    """(megabytes, what was measured): CUDA max allocated on a CUDA device, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / BYTES_PER_MB, "CUDA max allocated"
    return peak_rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss), "process peak RSS"


def _run_settings(config: Config, benchmark: Benchmark, device: torch.device) -> dict[str, Any]:
    """The settings that shape this run's outputs (recorded with every finished video)."""
    return output_settings(config, model_sha256=file_sha256(config.eval.model),
                           use_amp=amp_enabled(config.inference, device),
                           size=benchmark.size)


def _check_rerun(writer: ResultWriter, settings: dict[str, Any], overwrite: bool) -> None:
    """Refuse to add to a folder whose finished videos were made with other settings; with `overwrite`, forget
    them (they are all redone). Runs before config.yaml is written, so config.yaml always describes the outputs.

    Raises:
        ValueError: finished videos with other settings, without `overwrite` (names the first change).
    """
    stale = {}
    for name in writer.finished_videos():
        recorded = writer.finished_record(name).get(SETTINGS_KEY)
        if recorded != settings:
            stale[name] = recorded
    if not stale:
        return
    if overwrite:
        for name in stale:
            writer.start_video(name)
        return
    name, recorded = next(iter(stale.items()))
    changes = ("they were made by an eval.py that did not record its settings" if recorded is None
               else "changed: " + "; ".join(changed_settings(recorded, settings)))
    raise ValueError(f"output folder {writer.output_dir} holds {len(stale)} finished video(s) (e.g. {name!r}) made "
                     f"with other settings, {changes}; rerun with those settings, pass --overwrite to redo every "
                     "video, or choose another --output")


def _score(benchmark: Benchmark, writer: ResultWriter, videos: Sequence[str],
           davis_compat_decay: bool) -> tuple[Optional[EvaluationResults], dict[str, str]]:
    """J / F of the written masks against the benchmark's ground truth (frames having both) with the project's
    scoring driver (`inference.evaluation.folder_evaluation`), in the benchmark's scoring mode; DAVIS 2016 as one binary
    object. Returns (results, or None when no video has enough ground-truth frames; video -> why it could not be
    scored). The tables go to the output folder."""
    if benchmark.ground_truth_dir is None:
        return None, {}
    jobs = list_predicted_sequences(
        benchmark.ground_truth_dir, writer.mask_root, videos, read_mask=read_mask_ids,
        mode={"davis": MODE_DAVIS, "appearance": MODE_APPEARANCE}[benchmark.scoring_mode],
        davis_compat_decay=davis_compat_decay, binary=benchmark.dataset == "D16",
        align_ground_truth=align_ground_truth, min_frames=MIN_SCORED_SEQUENCE_FRAMES)
    outcome = score_sequences(jobs, output_dir=writer.output_dir, num_processes=SCORING_PROCESSES)
    unscored = {}
    for name, error in outcome.failures.items():
        if isinstance(error, ForeignObjectError):
            message = (f"its input masks give object id {error.object_id}, which its ground truth "
                       f"{benchmark.ground_truth_dir / name} never holds; the ground truth must use the input "
                       "masks' object ids")
        else:
            message = str(error)
        logger.error("video %s not scored: %s", name, message)
        unscored[name] = message
    return outcome.results, unscored


def main(argv: Optional[Sequence[str]] = None) -> Optional[RunSummary]:
    """Run an evaluation, in this process or as one rank of a torchrun job.

    Under torchrun (WORLD_SIZE > 1) each rank runs its share of the unfinished videos (`dataset.work_split`) on its
    own device and writes their outputs; rank 0 then writes what is global (timings, summary, tables, zip, report).

    Returns:
        the run's `RunSummary` (also written to <output>/summary.json; its `report` is the printed text), or None
        on a rank other than 0.
    Raises:
        FileNotFoundError: the checkpoint or the dataset root / its required folders are missing (named).
        NotADirectoryError, PermissionError: the output folder cannot be made or written.
        UnknownConfigKeyError, TypeError, ValueError: a bad setting, checkpoint, checkpoint sidecar or meta file;
            finished videos in the output folder made with other settings (without --overwrite).
        RankFailedError: under torchrun, another rank died or failed (the message names it).
        OutputFolderBusyError: another run holds the output folder (the message names its pid, host, start).
    """
    config = resolve_config(argv)
    if not launched_distributed():
        return _evaluate(config, None)
    with RankGroup.join(config.eval.device, config.eval.rank_timeout_s) as group:
        return _evaluate(config, group)


def _work_split(benchmark: Benchmark, names: Sequence[str], world_size: int) -> WorkSplit:
    """Share `names` among the ranks by frames x resized pixels; a video that cannot be opened costs nothing here
    and is reported by the rank that gets it."""
    work = {}
    for name in names:
        try:
            work[name] = video_work(benchmark.video(name),
                                    lambda height, width: resized_shape(height, width, benchmark.size))
        except VIDEO_ERRORS:
            continue
    return split_work(names, work, world_size)


def _run_share(network, benchmark: Benchmark, names: Sequence[str], config: Config, writer: ResultWriter,
               device: torch.device, settings: dict[str, Any], group: Optional[RankGroup]) -> dict[str, Any]:
    """Run `names` one after the other, frames read ahead and outputs written behind the compute
    (`eval.io_queue_frames`); return what happened: processed / skipped_empty / failed videos, their records,
    the wall time of the loop and the peak memory."""
    options = config.eval
    outcome: dict[str, Any] = {"processed": [], "records": {}, "skipped_empty": [], "failed": {}}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    description = f"{options.dataset} {options.split}" + ("" if group is None else f" rank {group.rank}")
    started = time.perf_counter()
    with BackgroundWriter(options.io_queue_frames) as background:
        behind = WriteBehind(writer, background)
        for name in tqdm(names, desc=description, unit="video"):
            if group is not None:
                group.check()
            writer.start_video(name)
            try:
                inputs = benchmark.fingerprint(name)
                video = benchmark.video(name)
                writer.plan_video(name, video.saved_frame_names, scores=options.save_scores)
                record = run_video(network, ReadAheadVideo(video, options.io_queue_frames), config, behind, device,
                                   size=benchmark.size)
                behind.flush()
            except EmptyMaskError as error:
                warnings.warn(str(error), stacklevel=1)
                outcome["skipped_empty"].append(name)
                continue
            except VIDEO_ERRORS as error:
                message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
                logger.error("video %s failed: %s", name, message)
                outcome["failed"][name] = message
                behind.flush()  # its queued frames land before they are deleted
                writer.start_video(name)  # leave nothing of it behind
                continue
            writer.finish_video(name, {**record, SETTINGS_KEY: settings, INPUTS_KEY: inputs})
            outcome["records"][name] = record
            outcome["processed"].append(name)
    outcome["wall_seconds"] = time.perf_counter() - started
    outcome["peak_memory_mb"], outcome["peak_memory_kind"] = _peak_memory(device)
    return outcome


def _evaluate(config: Config, group: Optional[RankGroup]) -> Optional[RunSummary]:
    """`main` for one process (`group` None) or one rank of a torchrun job."""
    options = config.eval
    if options.io_queue_frames < 0:
        raise ValueError(f"eval.io_queue_frames={options.io_queue_frames}: expected 0 (read and write in the compute "
                         "thread) or more frames")
    is_main = group is None or group.is_main
    output_dir = Path(options.output or DEFAULT_OUTPUT_PATTERN.format(dataset=options.dataset, split=options.split))
    check_output_folder(output_dir)
    benchmark = open_benchmark(options)
    check_output_outside_inputs(output_dir, [*benchmark.input_folders, options.model])
    if is_main:
        check_output_not_locked(output_dir)  # before the minutes of loading the network
    device = resolve_device(options.device) if group is None else group.device
    network = load_network(options.model, device)
    config = apply_checkpoint_switches(config, options.model, network.hidden_dim)
    network = optimize_network(network, channels_last=config.inference.channels_last,
                               compile=config.inference.compile_network)
    settings = _run_settings(config, benchmark, device)
    with held_output_folder(output_dir, lock=is_main):  # from before the first output to the end
        return _evaluate_locked(config, group, output_dir, benchmark, network, device, settings)


def _evaluate_locked(config: Config, group: Optional[RankGroup], output_dir: Path, benchmark: Benchmark, network,
                     device: torch.device, settings: dict[str, Any]) -> Optional[RunSummary]:
    """`_evaluate` once everything is read and checked and (on rank 0) the output folder is locked."""
    options = config.eval
    is_main = group is None or group.is_main
    writer = ResultWriter(output_dir, benchmark.layout)
    to_run: list[str] = []
    changed: dict[str, str] = {}
    if is_main:  # one rank decides what is left, so ranks never race over deleting stale videos
        writer.check_video_folders(benchmark.video_names)
        _check_rerun(writer, settings, options.overwrite)
        dump_config(config, output_dir / CONFIG_FILE)
        finished = [name for name in benchmark.video_names if not options.overwrite and writer.is_finished(name)]
        changed = changed_videos(finished, lambda name: writer.finished_record(name).get(INPUTS_KEY),
                                 benchmark.fingerprint)
        for name, what in changed.items():
            logger.warning("video %s: its %s changed since it was finished; it is redone", name, what)
        to_run = [name for name in benchmark.video_names if name not in finished or name in changed]
    started = time.perf_counter()
    if group is None:
        outcomes = [_run_share(network, benchmark, to_run, config, writer, device, settings, group)]
    else:
        shares = None
        if group.is_main:
            split = _work_split(benchmark, to_run, group.world_size)
            logger.info("work split over %d ranks (frames x pixels, longest first):\n%s", group.world_size,
                        split.describe())
            shares = [list(share) for share in split.shares]
        share = group.share_split(shares)
        outcome = _run_share(network, benchmark, share, config, writer, device, settings, group)
        outcomes = group.gather_results(outcome)
        if outcomes is None:  # not rank 0: rank 0 reports for the job
            return None
    wall_seconds = time.perf_counter() - started
    writer.check_finished_visible([outcome["processed"] for outcome in outcomes])

    records = {name: writer.finished_record(name) for name in benchmark.video_names if name not in to_run}
    skipped_finished = list(records)
    for outcome in outcomes:
        records.update(outcome["records"])
    finished = [name for name in benchmark.video_names if name in records]

    def in_video_order(names: Container[str]) -> list[str]:
        return [name for name in benchmark.video_names if name in names]

    failed = {name: message for outcome in outcomes for name, message in outcome["failed"].items()}
    processed = in_video_order({name for outcome in outcomes for name in outcome["processed"]})
    frames = sum(records[name]["frames"] for name in processed)
    seconds = sum(records[name]["seconds"] for name in processed)
    peaks = [outcome["peak_memory_mb"] for outcome in outcomes]
    timings = writer.write_timings([records[name] for name in finished])
    zip_path = writer.write_submission_zip(benchmark.zip_kind, finished) if benchmark.zip_kind else None
    results, unscored = _score(benchmark, writer, finished, options.davis_compat_decay)
    summary = RunSummary(
        output=output_dir, world_size=len(outcomes), skipped_finished=skipped_finished,
        inputs_changed=in_video_order(changed), processed=processed,
        skipped_empty=in_video_order({name for outcome in outcomes for name in outcome["skipped_empty"]}),
        failed={name: failed[name] for name in in_video_order(failed)},
        rank_frames=[sum(record["frames"] for record in outcome["records"].values()) for outcome in outcomes],
        frames=frames, seconds=seconds, fps=rate(frames, seconds), wall_seconds=wall_seconds,
        fps_end_to_end=rate(frames, wall_seconds), peak_memory_mb_per_rank=peaks, peak_memory_mb=max(peaks),
        peak_memory_kind=outcomes[0]["peak_memory_kind"], memory=largest_memory([records[name] for name in finished]),
        timings=timings, config=output_dir / CONFIG_FILE, zip=zip_path, unscored=unscored,
        scores=None if results is None else results.global_scores())
    if options.report:
        summary = dataclasses.replace(summary, page=write_page_or_warn(lambda: _write_page(
            config, benchmark, writer, device, settings, summary, {name: records[name] for name in finished},
            results)))
    summary = dataclasses.replace(summary, report=_format_report(summary, benchmark, results))
    return summary.write(output_dir / SUMMARY_FILE)


def _write_page(config: Config, benchmark: Benchmark, writer: ResultWriter, device: torch.device,
                settings: dict[str, Any], summary: RunSummary, records: dict[str, dict[str, Any]],
                results: Optional[EvaluationResults]) -> Path:
    """The run's report page (inference/evaluation/report_page.py) from every finished video's record, so a resumed
    run's page equals a fresh run's."""
    header = run_header(config, dataset=f"{benchmark.dataset} {benchmark.split}", sha256=settings["model.sha256"],
                        device=str(device), records=records,
                        peak_memory=f"{summary.peak_memory_mb:.0f} MB ({summary.peak_memory_kind})",
                        problems={"FAILED": summary.failed, "NOT SCORED": summary.unscored}, scores=summary.scores)

    def sources(name: str) -> VideoSources:
        frame_paths = benchmark.video(name).frame_paths
        truth = None if benchmark.ground_truth_dir is None else benchmark.ground_truth_dir / name
        return VideoSources(tuple(path.stem for path in frame_paths), writer.mask_root / name, truth,
                            {path.stem: path for path in frame_paths})

    return write_run_page(writer.output_dir, header, list(records), records, sources, results)


def _format_report(summary: RunSummary, benchmark: Benchmark, results: Optional[EvaluationResults]) -> str:
    lines = [f"{benchmark.dataset} {benchmark.split}: {len(summary.processed)} videos processed, "
             f"{len(summary.skipped_finished)} already finished, {len(summary.skipped_empty)} empty, "
             f"{len(summary.failed)} failed -> {summary.output}"]
    if results is not None:
        lines.append(results.format_table())
    elif benchmark.dataset in SERVER_SCORED and (benchmark.zip_kind or benchmark.dataset.startswith("LVOS")):
        lines.append(SERVER_SCORED[benchmark.dataset].format(zip=summary.zip, output=summary.output))
    elif not summary.unscored:
        lines.append("no ground truth beyond the input masks: not scored")
    return "\n".join(lines + summary.report_lines())


def _main_status(arguments: list[str]) -> int:
    """Run and print the report (rank 0 only under torchrun); the exit status is 1 when a video failed or could
    not be scored."""
    rank = f"rank {os.environ.get('RANK', '0')} " if launched_distributed() else ""
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s {rank}%(name)s: %(message)s")
    summary = main(arguments)
    if summary is None:  # not rank 0: rank 0 reports for the job
        return 0
    print(summary.report)
    return 1 if summary.failed or summary.unscored else 0


if __name__ == "__main__":
    # Another rank of a torchrun job dying, or another run holding the output folder, is expected too: one `error:`
    # line naming it, as for a user's mistake.
    sys.exit(run_cli(_main_status, expected=(RankFailedError, OutputFolderBusyError),
                     interrupted_message=INTERRUPTED_MESSAGE))
