r"""Run the paper's ablation rows (configs/ablations/*.yaml) through eval.py and tabulate them.

Each row file is an ordinary config preset holding only what the row changes (memory stores, memory reading,
long-term memory, memory sizes, deep update); its first line is a `# <group>: <label>` title. Every row runs
eval.py on the same benchmark, in its own process (so that peak memory is the row's own), into
`<output>/<row>/`, and the table gets J&F / J / F (when the benchmark has ground truth), FPS (data loading
excluded), peak memory and, at the end of a video (largest over videos), the working and long-term element
counts and the largest absolute value the sensory memory took. `<output>/ablations.html` shows the table and per
video every row's J&F, linking to each row's own report page (`<output>/<row>/report.html`).

Checkpoints: rows run `--model`, except rows whose config sets `eval.model` (rows that need a retrained network:
no sensory memory, other memory-reading similarities); they run that checkpoint and are skipped with the training
command when it does not exist. Rows with the same settings as an earlier row (e.g. the full-XMem row of each
group) reuse its result.

Parallel rows: `--jobs N` runs N rows at once, each eval.py process with (CPUs // N) threads (OMP_NUM_THREADS,
MKL_NUM_THREADS) and its output in `<output>/<row>/eval.log` instead of the terminal (a progress bar counts the
rows). Measured on an idle 2-core AMD EPYC (the study network, the quickstart's 8 held-out videos at 96x160): one
process with 2 threads took 21 s for a row, two one-thread processes side by side 36 s for two rows (18 s a row).
FPS is then each process's speed on a shared machine.

Resuming: a finished row is not run again and an interrupted one continues where eval.py stopped (finished
videos are kept); a row folder made with other settings is an error (choose another --output). The tables
`<output>/ablations.md` and `<output>/ablations.csv` are rewritten after every row; `<output>/ablations.json` (the
entries, inference/evaluation/ablation_entries.py, for tools that run this command as a process) is written when
every row has its entry.

Usage (every argument not listed below goes to eval.py: dataset flags, --size, key=value overrides):
    python scripts/study/run_ablations.py --model saves/XMem.pth --dataset D17 --d17_path ../DAVIS/2017
    python scripts/study/run_ablations.py --model saves/XMem.pth --config eval/lv1 --lv_path ../long_video_set \
        --rows 'long_term_*' stores_all --output ../output/ablations_lv1 --jobs 2
"""
from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from tqdm import tqdm

from configs.ablation_rows import ABLATION_DIR, AblationRow, select_rows
from configs.common import OUTPUT_CAPTURED, STDERR_TEED, atomic_output, project_command, run_child, run_cli
from configs.loader import add_flag_aliases, load_config, overrides_from_flags
from configs.schema import Config
from inference.evaluation.ablation_entries import TABLE_COLUMNS, AblationEntry, write_entries
from inference.evaluation.comparison_page import ComparisonRow, video_jf_from_table, write_comparison_page
from inference.evaluation.folder_evaluation import PER_OBJECT_RESULTS_FILE
from inference.evaluation.report_page import PAGE_FILE, write_page_or_warn
from inference.evaluation.run_summary import SUMMARY_FILE, RunSummary

DEFAULT_OUTPUT_PATTERN = "../output/ablations_{dataset}"
TABLE_FILE = "ablations"  # <output>/ablations.md and .csv
REQUEST_FILE = "ablation_request.json"  # the eval.py arguments a row folder was made with
RESULT_FILE = "ablation_result.json"  # a finished row's summary
LOG_FILE = "eval.log"  # a row's eval.py output when rows run in parallel (--jobs > 1)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
PERCENT = 100
KIB = 1024


# --------------------------------------------------------------------------------------------------- running
def _eval_arguments(row: AblationRow, checkpoint: str, output: Path, forwarded: Sequence[str]) -> list[str]:
    """eval.py's argv for a row: the user's (canonical) arguments, then the row's settings (which win), the
    checkpoint and the row's output folder."""
    return [*forwarded, *row.overrides, f"eval.model={checkpoint}", f"eval.output={output}"]


def _check_request(row_dir: Path, arguments: list[str]) -> None:
    """Record a row folder's eval.py arguments, or check that a resumed folder was made with the same ones."""
    request = row_dir / REQUEST_FILE
    if request.is_file():
        previous = json.loads(request.read_text())
        if previous != arguments:
            raise ValueError(
                f"{str(row_dir)!r} holds results made with other eval.py arguments ({' '.join(previous)}); "
                "use another --output, or delete that folder to redo the row"
            )
        return
    row_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(request) as temporary:
        temporary.write_text(json.dumps(arguments))


@dataclasses.dataclass(frozen=True)
class Parallelism:
    """How rows run: `jobs` eval.py processes at once, each with `threads` torch threads (None: the default, every
    CPU; only with one job)."""

    jobs: int = 1
    threads: Optional[int] = None

    @classmethod
    def for_jobs(cls, jobs: int) -> "Parallelism":
        if jobs == 1:
            return cls()
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return cls(jobs, max(1, cpus // jobs))


def _run_eval_process(arguments: list[str], row_dir: Path,
                      parallelism: Parallelism) -> tuple[Optional[RunSummary], str]:
    """Run `python eval.py ARGUMENTS` in a fresh process and read its summary.json. With one job its output is
    shown live; with several it goes to `<row_dir>/eval.log` (rows running side by side would interleave theirs).

    Returns:
        (eval.py's summary, ''), or (None, the last line eval.py printed) when it exited without one.
    """
    summary_path = row_dir / SUMMARY_FILE
    summary_path.unlink(missing_ok=True)
    command = project_command("eval.py", *arguments)
    if parallelism.threads is None:
        child = run_child(command, output=STDERR_TEED)
    else:
        child = run_child(command, output=OUTPUT_CAPTURED,
                          env_extra={name: str(parallelism.threads) for name in THREAD_VARIABLES})
        with atomic_output(row_dir / LOG_FILE) as temporary:
            temporary.write_text(child.output)
    if child.returncode == 0 and summary_path.is_file():
        return RunSummary.read(summary_path), ""
    return None, f"eval.py exited with status {child.returncode}: {child.last_line()}"


def _timing_totals(timings_csv: Path) -> tuple[int, int, float]:
    """(videos, frames, seconds) over every finished video of a row (this run's and earlier, resumed runs')."""
    with open(timings_csv, newline="") as handle:
        records = list(csv.DictReader(handle))
    return len(records), sum(int(r["frames"]) for r in records), sum(float(r["seconds"]) for r in records)


def _table_entry(row: AblationRow, status: str, checkpoint: Optional[str],
                 summary: Optional[RunSummary] = None, same_as: str = "") -> AblationEntry:
    entry = AblationEntry(row=row.name, group=row.group, label=row.label, status=status,
                          checkpoint=checkpoint or "", same_as=same_as)
    if summary is None:
        return entry
    scores = summary.scores or {}
    percents = {column: round(PERCENT * scores[key], 1)
                for column, key in (("jf", "J&F-Mean"), ("j", "J-Mean"), ("f", "F-Mean")) if key in scores}
    videos, frames, seconds = _timing_totals(summary.timings)
    return dataclasses.replace(entry, **percents, videos=videos, frames=frames,
                               fps=round(frames / seconds, 2) if seconds > 0 else None,
                               peak_memory_mb=round(summary.peak_memory_mb),
                               peak_memory_kind=summary.peak_memory_kind, memory=dict(summary.memory))


def run_row(row: AblationRow, *, model: str, output: Path, forwarded: Sequence[str],
            parallelism: Parallelism = Parallelism()) -> tuple[str, Optional[RunSummary]]:
    """Run (or resume, or reuse) one row. Returns (status, summary or None)."""
    checkpoint = row.checkpoint or model
    if not Path(checkpoint).is_file():
        how = (f"train it with python train.py --config {row.path} (or download a released one)"
               if row.checkpoint else "check --model")
        return f"skipped: checkpoint {checkpoint} not found; {how}", None
    row_dir = output / row.name
    result_path = row_dir / RESULT_FILE
    arguments = _eval_arguments(row, checkpoint, row_dir, forwarded)
    _check_request(row_dir, arguments)
    if result_path.is_file():
        return "done (earlier run)", RunSummary.read(result_path)
    tqdm.write(f"ablation row {row.name}: {row.group}: {row.label}")
    summary, error = _run_eval_process(arguments, row_dir, parallelism)
    if summary is None:
        return f"failed: {error}", None
    if summary.failed:
        first = next(iter(summary.failed.items()))
        return f"failed: {len(summary.failed)} video(s), e.g. {first[0]}: {first[1]}", summary
    summary.write(result_path)
    return "done", summary


def _format_number(value: Optional[float], digits: int = 1) -> str:
    if value == "" or value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def store_peaks(entry: AblationEntry, unit: str = "elements") -> str:
    """'working / long-term' peak store size of a table entry, in elements or KiB ('–' when not recorded)."""
    values = [entry.memory.get(f"{store}_{unit}_peak") for store in ("working", "long_term")]
    if any(value in ("", None) for value in values):
        return "–"
    if unit == "bytes":
        return " / ".join(f"{value / KIB:.1f}" for value in values)
    return " / ".join(str(value) for value in values)


def format_markdown(entries: Sequence[AblationEntry]) -> str:
    """The table as markdown, one section per group."""
    header = ("row", "setting", "J&F", "J", "F", "FPS", "peak MB", "working el.", "long-term el.",
              "store peak el. (working / long-term)", "store peak KiB (working / long-term)", "max abs sensory",
              "status")
    lines = []
    for group in dict.fromkeys(entry.group for entry in entries):
        lines += [f"### {group}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for entry in (entry for entry in entries if entry.group == group):
            status = entry.status + (f" (same settings as {entry.same_as})" if entry.same_as else "")
            cells = (entry.row, entry.label, _format_number(entry.jf), _format_number(entry.j),
                     _format_number(entry.f), _format_number(entry.fps, 2),
                     _format_number(entry.peak_memory_mb), _format_number(entry.memory.get("working_elements")),
                     _format_number(entry.memory.get("long_term_elements")), store_peaks(entry),
                     store_peaks(entry, "bytes"), _format_number(entry.memory.get("sensory_peak_abs"), 4),
                     status.replace("|", "/"))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    kinds = sorted({entry.peak_memory_kind for entry in entries if entry.peak_memory_kind})
    if kinds:
        lines.append(f"Peak memory: {', '.join(kinds)}. FPS excludes data loading. Element counts and "
                     "max abs sensory are at the end of a video (largest over videos); store peaks are the live "
                     "elements and bytes of the memory stores, largest over frames and videos.")
    return "\n".join(lines) + "\n"


def write_tables(entries: Sequence[AblationEntry], output: Path) -> tuple[Path, Path]:
    """Write `<output>/ablations.csv` and `.md` atomically; return their paths."""
    buffer = io.StringIO()
    table = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    table.writeheader()
    table.writerows(entry.table_row() for entry in entries)
    csv_path, markdown_path = output / f"{TABLE_FILE}.csv", output / f"{TABLE_FILE}.md"
    with atomic_output(csv_path) as temporary:
        temporary.write_text(buffer.getvalue())
    with atomic_output(markdown_path) as temporary:
        temporary.write_text(format_markdown(entries))
    return csv_path, markdown_path


def write_page(entries: Sequence[AblationEntry], output: Path, dataset: str) -> Path:
    """`<output>/ablations.html`: the table, and per video every row's J&F, linking to the rows' run pages."""
    rows = []
    for entry in entries:
        folder = output / (entry.same_as or entry.row)
        rows.append(ComparisonRow(entry.row, folder / PAGE_FILE,
                                  video_jf_from_table(folder / PER_OBJECT_RESULTS_FILE)))
    return write_comparison_page(output / f"{TABLE_FILE}.html", title=f"Ablations on {dataset}",
                                 markdown=format_markdown(entries), plots=[], sections={dataset: rows})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     epilog="Every other argument is passed to eval.py (dataset flags, --size, "
                                            "--config PRESET, key=value overrides).")
    parser.add_argument("--model", required=True, help="checkpoint for rows that do not name their own")
    parser.add_argument("--rows", nargs="+", default=None, metavar="ROW",
                        help="row names or shell patterns (e.g. 'long_term_*'); default: every row")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"root folder (default {DEFAULT_OUTPUT_PATTERN.format(dataset='<dataset>')})")
    parser.add_argument("--ablation_dir", type=Path, default=ABLATION_DIR, help="folder of the row configs")
    parser.add_argument("--jobs", type=int, default=1,
                        help="rows run at once, each eval.py process with CPUs // jobs threads and its output in "
                             f"<output>/<row>/{LOG_FILE}")
    return parser


def eval_base_arguments(forwarded: Sequence[str]) -> tuple[list[str], Config]:
    """The user's eval.py arguments in canonical form (`--config PRESET`, then `key=value` overrides with the
    original flags turned into overrides in eval.py's order), and the config they resolve to.

    Raises:
        SystemExit: an argument eval.py does not know (argparse's message).
        FileNotFoundError, UnknownConfigKeyError, TypeError, ValueError: as `configs.loader.load_config`.
    """
    parser = argparse.ArgumentParser(prog="run_ablations.py (arguments for eval.py)")
    parser.add_argument("--config", default=None)
    add_flag_aliases(parser)
    parser.add_argument("overrides", nargs="*")
    parsed = parser.parse_args(list(forwarded))
    overrides = overrides_from_flags(parsed) + list(parsed.overrides)
    config = load_config(parsed.config, overrides)
    return ([] if parsed.config is None else ["--config", parsed.config]) + overrides, config


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run the selected rows; return {'entries': the AblationEntry list, 'csv': path, 'markdown': path, 'json': the
    entries' path, 'table': text, 'page': the comparison page's path, or None when it could not be written (one
    warning)}.

    Raises:
        FileNotFoundError / ValueError: no row files, an unknown row, a row folder made with other settings, or
            eval.py arguments that do not resolve (checked before any row runs).
    """
    parser = build_parser()
    arguments, forwarded = parser.parse_known_args(argv)
    if arguments.jobs < 1:
        parser.error(f"--jobs {arguments.jobs} is invalid; expected at least 1")
    rows = select_rows(arguments.rows, arguments.ablation_dir)
    forwarded, base_config = eval_base_arguments(forwarded)
    output = arguments.output or Path(DEFAULT_OUTPUT_PATTERN.format(dataset=base_config.eval.dataset))
    first_with_settings: dict[str, str] = {}  # row -> the first row with its checkpoint and settings (itself)
    by_settings: dict[tuple, str] = {}
    for row in rows:
        settings = (str(Path(row.checkpoint or arguments.model).resolve()), tuple(sorted(row.overrides)))
        first_with_settings[row.name] = by_settings.setdefault(settings, row.name)
    results = _run_rows([row for row in rows if first_with_settings[row.name] == row.name], arguments.model,
                        output, forwarded, Parallelism.for_jobs(arguments.jobs),
                        lambda finished: write_tables(_entries(rows, first_with_settings, finished,
                                                               arguments.model), output))
    entries = _entries(rows, first_with_settings, results, arguments.model)
    csv_path, markdown_path = write_tables(entries, output)
    json_path = write_entries(entries, output)
    page = write_page_or_warn(lambda: write_page(entries, output, base_config.eval.dataset))
    table = format_markdown(entries)
    print(table)
    return {"entries": entries, "csv": csv_path, "markdown": markdown_path, "json": json_path, "table": table,
            "page": page}


def _run_rows(rows: Sequence[AblationRow], model: str, output: Path, forwarded: Sequence[str],
              parallelism: Parallelism, on_result) -> dict[str, tuple[str, Optional[RunSummary]]]:
    """Run each row (`parallelism.jobs` at a time); {row name: (status, summary or None)}. `on_result(results so
    far)` is called in this thread after each row ends (the tables are rewritten there)."""
    results: dict[str, tuple[str, Optional[RunSummary]]] = {}
    if parallelism.jobs == 1:
        for row in rows:
            results[row.name] = run_row(row, model=model, output=output, forwarded=forwarded)
            on_result(results)
        return results
    pool = concurrent.futures.ThreadPoolExecutor(parallelism.jobs)
    try:
        with tqdm(total=len(rows), desc=f"rows ({parallelism.jobs} at once)", unit="row") as progress:
            running = {pool.submit(run_row, row, model=model, output=output, forwarded=forwarded,
                                   parallelism=parallelism): row.name for row in rows}
            for future in concurrent.futures.as_completed(running):
                results[running[future]] = future.result()
                progress.update()
                on_result(results)
    finally:
        # After an interrupt or an error, rows still queued must not start (the running ones end with their
        # eval.py processes, which resume next time).
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _entries(rows: Sequence[AblationRow], first_with_settings: dict[str, str],
             results: dict[str, tuple[str, Optional[RunSummary]]], model: str) -> list[AblationEntry]:
    """Table entries of the rows whose run has ended, in row order; a row with an earlier row's settings shares
    its result (`same_as`)."""
    entries = []
    for row in rows:
        first = first_with_settings[row.name]
        if first in results:
            status, summary = results[first]
            entries.append(_table_entry(row, status, row.checkpoint or model, summary,
                                        same_as="" if first == row.name else first))
    return entries


def _cli(arguments: list[str]) -> int:
    result = main(arguments)
    return 1 if any(entry.status.startswith("failed") for entry in result["entries"]) else 0


if __name__ == "__main__":
    sys.exit(run_cli(_cli))
