r"""The paper's ablations in miniature: every ablation row that needs no retraining, run with one or several trained
networks on synthetic benchmarks, with bootstrap intervals.

    python scripts/study/run_study.py --model /work/study_runs/saves/study/study_s03_1320.pth --out ../output/study
    python scripts/study/run_study.py --model seed1.pth seed2.pth seed3.pth --no_sensory_model no_sensory.pth \
        --sweep --out ../output/study

Benchmarks (written under <out>/data/ on first use; deterministic by seed):
- `held_out`: STUDY_PLAN.held_out_videos DAVIS-style videos of the quickstart's held-out kind (scripts/
  study_prepare.py; the first 8 are the quickstart's own held-out videos), every frame annotated, eval.py D17;
- `hard`: as many videos of the same size and length of the `hard` preset (2-4 objects, fast motion, heavy
  occlusion, three look-alikes), which no training video uses: the full model's score out of distribution (only
  `stores_all` runs there, and rows scoped to it, e.g. `hard:first_frame_only`);
- `long`: the long benchmark of dataset/synthetic_long.py (LONG_BENCHMARK: 5 videos x 2000 frames, objects away
  for hundreds of frames, sparse ground truth, every absence recorded), eval.py LV1.
Memory budgets: the paper's ratios at each benchmark's frame size and length (inference/miniature.py: T_max, T_min,
r as the paper, P keeping 1.6 % of each consolidation's candidates, LT_max full from a quarter of the video on),
printed above each table; `--memory_budgets paper` uses the paper's numbers as they are.
Rows: every row of configs/ablations/ that runs with --model (rows naming a retrained checkpoint are left out),
plus configs/study_baselines/ (first frame only, the bounded working-memory baselines, the positive controls),
each run by scripts/study/run_ablations.py as a child process (one eval.py process per row; finished rows are reused,
interrupted ones resume), and copy-the-first-frame-mask, scored here. Generated rows (written under <out>/<benchmark>/):
- `--sweep` (long benchmark, the first --model network only): the selection sweep, P at `--sweep_shares` of each
  consolidation's candidates x {usage, random (`--sweep_seeds` seeds)} x {potentiation on, off}; its table gives the
  usage - random gap and the potentiation gap against the share kept (and <out>/study_sweep.png);
- `--no_sensory_model`: the paper's store rows that need a network trained without sensory memory
  (configs/study_no_sensory.yaml), run with that checkpoint beside the main network's rows (once: with several
  --model networks they are one network's, under <out>/<benchmark>/no_sensory/, in every network's table).

Every row's masks are scored per object (inference/evaluation/metrics.py, DAVIS mode) and the videos are resampled with
replacement (`--bootstrap` times, the same resamples for every row): each row gets a 95% interval for its J&F and
for its difference from the full model (`stores_all`), so a difference whose interval excludes 0 is more than the
luck of which videos were drawn. The long table adds the re-entry J&F (inference/evaluation/reentry.py: the ground-truth
frames within study_benchmarks.REENTRY_WINDOW_FRAMES after an object comes back from an absence of at least
REENTRY_MIN_ABSENCE_FRAMES), with its interval, and the share of the look-alikes labelled as an object while it is
away. Memory columns are the stores' own (largest live elements and KiB of working and long-term memory).
With several --model networks (training seeds) every row is reported per network, and a verdicts table pools them:
a difference is "reproduced" only if its sign holds for every network and its pooled interval (the same video
resamples for every network, differences averaged over networks) excludes zero.
Output: <out>/study.md and .csv (the tables), <out>/study.png (J&F with intervals, if matplotlib is installed),
<out>/study.html (the tables, the plots and per video every row's J&F, linking to each row's report page),
<out>/[<network>/]memory_trace_long.csv and .png (the full model's working and long-term elements against frame,
per long video), and run_ablations.py's own tables under <out>/[<network>/]<benchmark>/.

Cost (XMem at 96x160, one thread, measured): one row takes about 2.5-4 min (held_out, 900 frames), 12 min (long
at --size reduced, 3,200 frames) or 45 min (long at --size full, 10,000 frames). The default rows are 29 settings
per benchmark (rows with the same settings run once) and each network runs them all; the sweep adds 8 rows per
share on the long benchmark (32 by default), for the first network only. `--rows` (optionally per benchmark) and
`--benchmarks` restrict it; `--jobs 2` runs two rows at once with one thread each.
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from configs.ablation_rows import ABLATION_DIR, AblationRow, select_rows
from configs.common import REPOSITORY, STDERR_TEED, project_command, run_child, run_cli
from configs.loader import load_config
from dataset.synthetic_plan import QUICKSTART_HELD_OUT_VIDEOS, STUDY_PRESET
from dataset.writers import ResultWriter
from inference.evaluation.ablation_entries import ENTRIES_FILE, AblationEntry, read_entries
from inference.evaluation.comparison_page import ComparisonRow, video_jf, write_comparison_page
from inference.evaluation.metrics import ObjectScores
from inference.miniature import feature_elements
from inference.evaluation.report_page import PAGE_FILE, write_page_or_warn
from inference.evaluation.study_statistics import (CONFIDENCE, PERCENT, SweepPoint, bootstrap_sums,
                                                   pooled_verdicts, reentry_sums, resample_draws, row_sums,
                                                   sweep_gaps)
from inference.video_runner import MEMORY_TRACE_KEY
from scripts.study import study_benchmarks
from scripts.study.study_benchmarks import (SIZES, BenchmarkData, ReentryTruth, copy_first_mask, reentry_truth,
                                            score_folder, score_reentry_folder, write_benchmark)
from scripts.study.study_report import (CSV_COLUMNS, REENTRY_KEYS, SWEEP_PLOT_FILE, TABLE_FILE, format_markdown,
                                        format_sweep, format_verdicts, write_memory_traces, write_plot,
                                        write_sweep_plot, write_tables)
from scripts.study.study_rows import (DEFAULT_SWEEP_SEEDS, DEFAULT_SWEEP_SHARES, NO_SENSORY_ROWS, GeneratedRow,
                                      no_sensory_rows, sweep_rows)

ABLATIONS_COMMAND = "scripts/study/run_ablations.py"  # runs the rows, one eval.py process each
BASELINE_DIR = REPOSITORY / "configs" / "study_baselines"
FULL_MODEL_ROW = "stores_all"
COPY_FIRST_MASK = "copy_first_mask"
BENCHMARKS = ("held_out", "hard", "long")
OUT_OF_DISTRIBUTION = "hard"  # runs the full model alone unless rows are scoped to it
DEFAULT_BOOTSTRAP = 2000
MEMORY_BUDGETS = ("miniature", "paper")
# Generated rows: their files go to <out>/[<network>/]<benchmark>/rows/<name>/, their outputs to .../<name>/.
SWEEP_ROWS, NO_SENSORY_ROWS_NAME = "sweep", "no_sensory"
GENERATED_ROWS_FOLDER = "rows"
TRACE_COLUMNS = ("frame", "working_elements", "long_term_elements")  # of a video record's MEMORY_TRACE_KEY
MEMORY_TRACE_FILE = "memory_trace"  # <out>/[<network>/]memory_trace_long.csv/.png: the full model's stores


def study_rows(patterns: Optional[Sequence[str]], benchmark: str) -> dict[str, list[str]]:
    """{ablation folder: row names} to run on `benchmark`: the rows that run with --model (no retrained checkpoint),
    filtered by `patterns` (file stems or shell patterns over both folders; `<benchmark>:<pattern>` applies to that
    benchmark only, e.g. `long:long_term_*`, since consolidation never happens in a 30-frame held-out video). The
    out-of-distribution benchmark runs the full model and only the rows scoped to it.

    Raises:
        ValueError: a pattern matches no row, or names an unknown benchmark.
    """
    folders = {ABLATION_DIR: select_rows(None),
               BASELINE_DIR: select_rows(None, BASELINE_DIR)}
    names = {folder: [row.name for row in rows if row.checkpoint is None] for folder, rows in folders.items()}
    if patterns is not None or benchmark == OUT_OF_DISTRIBUTION:
        every = [name for rows in names.values() for name in rows]
        chosen = [FULL_MODEL_ROW] if benchmark == OUT_OF_DISTRIBUTION else []
        for pattern in patterns or ():
            scope, _, row_pattern = pattern.rpartition(":")
            if scope and scope not in BENCHMARKS:
                raise ValueError(f"--rows {pattern!r} names benchmark {scope!r}; benchmarks: {', '.join(BENCHMARKS)}")
            if not fnmatch.filter(every, row_pattern):
                raise ValueError(f"--rows {pattern!r} matches no study row; rows: {', '.join(every)}")
            if scope == benchmark or (scope == "" and benchmark != OUT_OF_DISTRIBUTION):
                chosen.append(row_pattern)
        names = {folder: [name for name in rows if any(fnmatch.fnmatchcase(name, p) for p in chosen)]
                 for folder, rows in names.items()}
    return {str(folder): rows for folder, rows in names.items() if rows}


def run_ablation_rows(arguments: Sequence[str], output: Path) -> list[AblationEntry]:
    """Run `scripts/study/run_ablations.py ARGUMENTS --output OUTPUT` in a child process (its output shown live) and
    read back the entries it writes: a row that failed or was skipped is an entry with that status.

    Raises:
        ChildProcessError: the command stopped before every row had its entry (names the command, its exit status
            and the last line it printed).
    """
    entries_path = output / ENTRIES_FILE
    entries_path.unlink(missing_ok=True)  # the entries of an earlier run must not pass for this run's
    child = run_child(project_command(ABLATIONS_COMMAND, *arguments, "--output", str(output)), output=STDERR_TEED)
    if not entries_path.is_file():
        raise ChildProcessError(f"{ABLATIONS_COMMAND} (rows into {output}) exited with status {child.returncode} "
                                f"without its table: {child.last_line()}")
    return read_entries(output)


# ------------------------------------------------------------------------------------------------------ main
@dataclasses.dataclass(frozen=True)
class RowSource:
    """Rows run_ablations.py runs from one folder of row files with one checkpoint, into `output`."""

    folder: Path
    names: tuple[str, ...]
    model: Path
    output: Path


@dataclasses.dataclass
class BenchmarkResult:
    """One network's rows on one benchmark: table entries, per-video J&F sums (and re-entry sums) by row."""

    entries: list[dict[str, Any]]
    sums: dict[str, tuple[np.ndarray, np.ndarray]]
    videos: list[str]
    scores: dict[str, Sequence[ObjectScores]]
    folders: dict[str, Path]  # each scored row's masks


def run_benchmark(benchmark: BenchmarkData, sources: Sequence[RowSource], root: Path, forwarded: Sequence[str],
                  num_resamples: int, truth: Optional[dict[str, ReentryTruth]] = None) -> BenchmarkResult:
    """Run the rows on one benchmark (run_ablations.py), score them (and their re-entries, with `truth`) and
    bootstrap."""
    ablation_entries: list[tuple[AblationEntry, Path]] = []
    scheduled: dict[tuple, str] = {}  # (checkpoint, settings) -> the first row run with them, over every folder
    duplicates: dict[str, tuple[AblationRow, str]] = {}
    for source in sources:
        names = []
        for row in select_rows(list(source.names), source.folder):
            settings = (str(source.model), tuple(sorted(row.overrides)))
            if settings in scheduled:  # e.g. first_frame_only and stores_sensory_only: run once
                duplicates[row.name] = (row, scheduled[settings])
            else:
                scheduled[settings] = row.name
                names.append(row.name)
        if not names:
            continue
        entries = run_ablation_rows(["--model", str(source.model), "--rows", *names, "--ablation_dir",
                                     str(source.folder), "--config", STUDY_PRESET, *benchmark.eval_arguments,
                                     *forwarded], source.output)
        ablation_entries += [(entry, source.output / (entry.same_as or entry.row)) for entry in entries]
    by_row = {entry.row: (entry, folder) for entry, folder in ablation_entries}
    for row, original in duplicates.values():
        entry, folder = by_row[original]
        ablation_entries.append((dataclasses.replace(entry, row=row.name, group=row.group, label=row.label,
                                                     status=f"{entry.status} (same settings as {original})"), folder))
    copy_output = root / benchmark.name / COPY_FIRST_MASK
    copy_first_mask(benchmark, copy_output)
    copy_entry = {"row": COPY_FIRST_MASK, "group": "Calibration", "label": "copy the first-frame mask",
                  "status": "done"}
    folders = {COPY_FIRST_MASK: copy_output}
    folders.update({entry.row: folder for entry, folder in ablation_entries if entry.status.startswith("done")})
    scores = {name: score_folder(benchmark, folder) for name, folder in folders.items()}
    videos, sums = row_sums(scores)
    draws = resample_draws(len(videos), num_resamples)
    statistics = bootstrap_sums(sums, FULL_MODEL_ROW, draws)
    reentry_statistics, reentry = {}, {}
    if truth is not None:
        reentry = {name: score_reentry_folder(truth, folder) for name, folder in folders.items()}
        reentry_statistics = bootstrap_sums({name: reentry_sums(rows, videos) for name, rows in reentry.items()},
                                            FULL_MODEL_ROW, draws)
    entries = []
    for entry in [copy_entry] + [entry.table_row() for entry, _ in ablation_entries]:
        merged = {key: value for key, value in entry.items() if key in CSV_COLUMNS}
        merged.update({"benchmark": benchmark.name, "jf": ""})
        merged.update({key: PERCENT * float(value) for key, value in statistics.get(entry["row"], {}).items()})
        merged.update({REENTRY_KEYS[key]: PERCENT * float(value)
                       for key, value in reentry_statistics.get(entry["row"], {}).items()})
        if entry["row"] in reentry:
            rows = reentry[entry["row"]]
            away = sum(score.away_frames for score in rows)
            lookalike = sum(score.lookalike_frames for score in rows)
            merged.update(returns=sum(score.returns for score in rows),
                          away_fp_area=PERCENT * sum(s.away_area_sum for s in rows) / away if away else "",
                          away_fp_lookalike=(PERCENT * sum(s.lookalike_fp_sum for s in rows) / lookalike
                                             if lookalike else ""))
        if entry["row"] in scores:
            objects = scores[entry["row"]]
            merged.update(j=PERCENT * float(np.mean([s.j_mean for s in objects])),
                          f=PERCENT * float(np.mean([s.f_mean for s in objects])),
                          videos=len({s.sequence for s in objects}))
        entries.append(merged)
    return BenchmarkResult(entries, sums, videos, scores, folders)


def comparison_rows(result: BenchmarkResult) -> list[ComparisonRow]:
    """The comparison page's rows of one benchmark: each row's J&F per video, linking to its run page."""
    return [ComparisonRow(row, None if row == COPY_FIRST_MASK else result.folders[row] / PAGE_FILE,
                          video_jf(objects)) for row, objects in result.scores.items()]


def runnable_rows(rows: dict[str, list[str]], overrides: Sequence[str], notes: list[str],
                  benchmark: str) -> dict[str, list[str]]:
    """`rows` without those whose settings do not resolve over `overrides` (e.g. the paper's P = 256 row above the
    miniature LT_max); each one left out gets a note with the reason."""
    kept = {}
    for folder, names in rows.items():
        kept[folder] = []
        for row in select_rows(names, Path(folder)):
            try:
                load_config(STUDY_PRESET, [*overrides, *row.overrides])
            except ValueError as error:
                notes.append(f"{benchmark}: {row.name} left out, its settings conflict with these memory budgets "
                             f"({error}).")
                continue
            kept[folder].append(row.name)
    return {folder: names for folder, names in kept.items() if names}


def memory_traces(row_folder: Path, videos: Sequence[str]) -> dict[str, list[list[int]]]:
    """{video: [[frame, working elements, long-term elements], ...]} from a row's finished-video records (videos
    finished by a version that kept no trace are left out)."""
    writer = ResultWriter(row_folder, "davis")
    records = {video: writer.finished_record(video) for video in videos if writer.is_finished(video)}
    traces = {}
    for video, record in records.items():
        if MEMORY_TRACE_KEY in record:
            trace = record[MEMORY_TRACE_KEY]
            positions = [trace["columns"].index(column) for column in TRACE_COLUMNS]  # read by name, not position
            traces[video] = [[row[position] for position in positions] for row in trace["rows"]]
    return traces


def _row_sources(benchmark: BenchmarkData, rows: dict[str, list[str]], model: Path, root: Path,
                 args: argparse.Namespace, with_sweep: bool) -> tuple[list[RowSource], list[SweepPoint]]:
    """The row folders to run for one network (outputs under `root`) on one benchmark, writing the generated rows'
    files (the sweep's only `with_sweep`). The no-sensory rows are one network's whatever the main network, so
    they live under --out for every network: the first network runs them, the others find them done."""
    sources = [RowSource(Path(folder), tuple(names), model, root / benchmark.name / Path(folder).name)
               for folder, names in rows.items()]
    points: list[SweepPoint] = []
    generated: list[tuple[str, list[GeneratedRow], Path, Path]] = []  # name, rows, checkpoint, output root
    if with_sweep and benchmark.name == "long":
        sweep, points = sweep_rows(args.sweep_shares, args.sweep_seeds, feature_elements(benchmark.height,
                                                                                         benchmark.width),
                                   benchmark.num_frames)
        generated.append((SWEEP_ROWS, sweep, model, root))
    if args.no_sensory_model is not None and benchmark.name != OUT_OF_DISTRIBUTION:
        generated.append((NO_SENSORY_ROWS_NAME, no_sensory_rows(), args.no_sensory_model.resolve(), args.out.resolve()))
    for name, row_list, checkpoint, output_root in generated:
        folder = output_root / benchmark.name / GENERATED_ROWS_FOLDER / name
        folder.mkdir(parents=True, exist_ok=True)
        for row in row_list:
            row.write(folder)
        sources.append(RowSource(folder, tuple(row.name for row in row_list), checkpoint,
                                 output_root / benchmark.name / name))
    return sources, points


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run the study; returns {'entries', 'markdown', 'csv', 'plot', 'sweep_plot', 'sweeps', 'verdicts', 'notes',
    'page'}."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, nargs="+", required=True,
                        help="the study network, or several (training seeds), each a snapshot with its sidecar")
    parser.add_argument("--no_sensory_model", type=Path, default=None,
                        help="a study network trained without sensory memory (configs/study_no_sensory.yaml): "
                             f"adds the rows {', '.join(NO_SENSORY_ROWS)}")
    parser.add_argument("--out", type=Path, default=Path("../output/study"), help="data, row outputs, tables")
    parser.add_argument("--benchmarks", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--rows", nargs="+", default=None, metavar="ROW",
                        help="row names or shell patterns, optionally scoped to one benchmark (long:long_term_*) "
                             "(default: every row that needs no retraining, on both benchmarks)")
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="benchmark sizes: full (the study), reduced or tiny (a pipeline check)")
    parser.add_argument("--memory_budgets", choices=MEMORY_BUDGETS, default="miniature",
                        help="miniature: the paper's ratios at each benchmark's frame size and length "
                             "(inference/miniature.py); paper: the paper's numbers as they are")
    parser.add_argument("--sweep", action="store_true",
                        help="add the selection sweep's rows (long benchmark, the first --model network)")
    parser.add_argument("--sweep_shares", type=float, nargs="+", default=list(DEFAULT_SWEEP_SHARES),
                        help="shares of each consolidation's candidates kept as prototypes")
    parser.add_argument("--sweep_seeds", type=int, default=DEFAULT_SWEEP_SEEDS, help="random-selection seeds")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="bootstrap resamples")
    parser.add_argument("--jobs", type=int, default=1,
                        help="rows run at once (run_ablations.py --jobs: each eval.py process with CPUs // jobs "
                             "threads); 2 on a 2-core machine")
    args, forwarded = parser.parse_known_args(argv)
    for model in [*args.model, *([args.no_sensory_model] if args.no_sensory_model else [])]:
        if not model.is_file():
            parser.error(f"--model {model} is not a file; train the study network first "
                         "(scripts/study/study_prepare.py)")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs} is invalid; expected at least 1")
    if args.bootstrap < 1:
        parser.error(f"--bootstrap {args.bootstrap} is invalid; expected a positive number of resamples")
    if args.sweep_seeds < 1 or not all(0 < share <= 1 for share in args.sweep_shares):
        parser.error(f"--sweep_shares {args.sweep_shares} / --sweep_seeds {args.sweep_seeds}: expected shares in "
                     "(0, 1] and ≥ 1 seed")
    rows = {name: study_rows(args.rows, name) for name in args.benchmarks}
    size, out = SIZES[args.size], args.out.resolve()
    networks = [""] if len(args.model) == 1 else [f"network {index + 1}" for index in range(len(args.model))]
    entries, notes, headers, sections, comparison = [], [], {}, [], {}
    sweeps: dict[str, list[dict[str, float]]] = {}
    verdicts: dict[str, dict[str, dict[str, Any]]] = {}
    for name in args.benchmarks:
        benchmark = write_benchmark(name, size, out / "data")
        settings = benchmark.memory_settings(args.memory_budgets)
        headers[name] = (settings.describe() if settings is not None
                         else "memory settings: the paper's (T_max 10, T_min 5, r 5, P 128, LT_max 10000)")
        budget_overrides = settings.overrides() if settings is not None else []
        key_values = [argument for argument in forwarded if "=" in argument and not argument.startswith("-")]
        rows[name] = runnable_rows(rows[name], [*budget_overrides, *key_values], notes, name)
        truth = reentry_truth(benchmark) if name == "long" else None
        per_network = []
        for index, (network, model) in enumerate(zip(networks, args.model)):
            root = out / network.replace(" ", "") if network else out
            # The sweep maps a mechanism, not a claim: one network (its random-selection seeds give the spread);
            # on every network it would cost as much again per network (8 long rows a share).
            sources, points = _row_sources(benchmark, rows[name], model.resolve(), root, args,
                                           with_sweep=args.sweep and index == 0)
            result = run_benchmark(benchmark, sources, root, [*budget_overrides, *forwarded, "--jobs", str(args.jobs)],
                                   args.bootstrap, truth)
            for entry in result.entries:
                entry["network"] = network
            entries += result.entries
            per_network.append(result.sums)
            comparison[f"{name} ({network})" if network else name] = comparison_rows(result)
            if points:
                gaps = sweep_gaps(points, result.sums, resample_draws(len(result.videos), args.bootstrap))
                sweeps[network] = gaps
                sections.append(format_sweep(gaps, f"selection sweep: {name}" + (f" ({network})" if network else ""),
                                             args.sweep_seeds))
            if truth is not None and FULL_MODEL_ROW in result.folders:
                traces = memory_traces(result.folders[FULL_MODEL_ROW], result.videos)
                write_memory_traces(traces, root / f"{MEMORY_TRACE_FILE}_{name}",
                                    settings.max_long_term_elements if settings is not None else None)
            if name == "held_out" and args.size != "tiny" and FULL_MODEL_ROW in result.scores:
                quickstart_videos = {f"synth{index:04d}" for index in range(QUICKSTART_HELD_OUT_VIDEOS)}
                objects = [s for s in result.scores[FULL_MODEL_ROW] if s.sequence in quickstart_videos]
                jf = PERCENT * float(np.mean([(s.j_mean + s.f_mean) / 2 for s in objects]))
                notes.append(f"Full model{' (' + network + ')' if network else ''} on the quickstart's "
                             f"{QUICKSTART_HELD_OUT_VIDEOS} held-out videos: {jf:.1f} J&F.")
            write_tables(entries, out, notes, headers, sections)
        if len(per_network) > 1 and all(FULL_MODEL_ROW in sums for sums in per_network):
            verdicts[name] = pooled_verdicts(per_network, FULL_MODEL_ROW, args.bootstrap)
            sections.append(format_verdicts(verdicts[name], f"verdicts over {len(networks)} networks: {name}",
                                            networks))
    if args.no_sensory_model is not None and len(args.model) > 1:
        notes.append(f"The rows {', '.join(NO_SENSORY_ROWS)} are one retrained network's ({args.no_sensory_model}), "
                     "compared with each main network's full model: their verdicts hold over the main networks' "
                     "seeds, not over no-sensory seeds.")
    window, min_absence = study_benchmarks.REENTRY_WINDOW_FRAMES, study_benchmarks.REENTRY_MIN_ABSENCE_FRAMES
    notes.append(f"J&F x 100; intervals: {CONFIDENCE:.0%} percentile bootstrap over videos ({args.bootstrap} "
                 f"resamples, paired across rows); Δ: difference from {FULL_MODEL_ROW}. Store sizes: the largest "
                 "live elements and KiB of working / long-term memory over frames and videos. Re-entry: J&F on the "
                 f"ground-truth frames within {window} frames after an object comes back from an absence of at "
                 f"least {min_absence} frames; while away: the share of the look-alikes' visible pixels (and of the "
                 "frame) labelled as the absent object.")
    csv_path, markdown_path = write_tables(entries, out, notes, headers, sections)
    plot = write_plot(entries, out / f"{TABLE_FILE}.png")
    sweep_plot = write_sweep_plot(sweeps, out / SWEEP_PLOT_FILE) if sweeps else None
    markdown = format_markdown(entries, notes, headers, sections)
    page = write_page_or_warn(lambda: write_comparison_page(
        out / f"{TABLE_FILE}.html", title="Ablations in miniature", markdown=markdown,
        plots=[path for path in (plot, sweep_plot) if path is not None], sections=comparison))
    print(markdown)
    return {"entries": entries, "markdown": markdown_path, "csv": csv_path, "plot": plot, "sweep_plot": sweep_plot,
            "sweeps": sweeps, "verdicts": verdicts, "notes": notes, "page": page}


def _cli(arguments: list[str]) -> int:
    main(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_cli, expected=(ChildProcessError,)))
