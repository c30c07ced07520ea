"""The report page of an evaluation run, and the page that compares the rows of an ablation or study run.

`write_run_page` writes `report.html` beside a run's outputs, with its images in `report/`: plain HTML and CSS,
plots as inline SVG, relative links only, so it opens from a file browser or a copied folder, with no network,
server or JavaScript. It shows
- the header: checkpoint and its SHA-256, dataset, the settings that differ from the defaults, device, FPS, peak
  memory, date and the global scores (`global_results.csv`);
- videos and their objects, worst J&F first (`per_object_results.csv`), each video linking to its section;
- per video: J and F on each scored frame per object, a contact sheet of its worst and best frames (prediction over
  ground truth, in the masks' palette; evenly spaced frames when unscored) and its working / long-term memory
  sizes over the video with consolidations and pruning marked (the record's `memory_trace`, see
  `inference.video_runner.MemoryRecorder`).
Values the page shows as numbers carry the tables' exact text in a `data-value` attribute; measured values
(timings, memory, date) are in elements of class `measured`, the only part of two pages of the same outputs that
may differ. The page comparing an ablation or study run's rows is `inference.evaluation.comparison_page`.

The writers raise; `write_page_or_warn` turns any error into one warning line, since a page never fails a run.
Tiles and plots are drawn in `inference.evaluation.report_figures`.
"""
from __future__ import annotations

import dataclasses
import datetime
import html
import logging
import math
import os
import re
import shutil
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from configs.common import atomic_write_text
from configs.schema import Config
from dataset.image_io import read_index_mask
from inference.evaluation import report_figures
from inference.evaluation.metrics import GLOBAL_COLUMNS, EvaluationResults, ObjectScores

logger = logging.getLogger(__name__)

PAGE_FILE = "report.html"
IMAGES_FOLDER = "report"  # beside the page; rewritten whole with each page
STAGING_PREFIX = f".{IMAGES_FOLDER}."  # the next images are drawn in a hidden folder, then swapped in
MASK_SUFFIX = ".png"
SHEET_FRAMES = 4  # worst frames, and as many best frames (or twice as many evenly spaced frames when unscored)
PERCENT = 100
TABLE_NUMBER_FORMAT = "{:.10f}"  # as inference/evaluation/folder_evaluation.py writes the tables
SHOWN_EVAL_SETTINGS = ("size", "flip", "save_all", "use_all_masks")  # eval settings that change the outputs
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1180px;padding:0 1em;color:#222}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.2em;margin:1.6em 0 .4em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.4em 0}td,th{padding:2px 9px;border-bottom:1px solid #e3e3e3;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}tr.video td{font-weight:600;background:#fafafa}
#global td{text-align:right}tr.object td:first-child,tr.predicted td:first-child{padding-left:2em}
.measured{color:#555}dl{display:grid;grid-template-columns:max-content auto;gap:1px 1em;margin:.4em 0}
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}figure{display:inline-block;margin:0 6px 8px 0;vertical-align:top}
figcaption{font-size:12px;text-align:center}.sheet h3{font-size:1em;margin:.5em 0 .2em}svg{display:block;margin:.3em 0}
.legend span{margin-right:1.2em;font-size:12px}.note{color:#666}.plots{display:flex;flex-wrap:wrap;gap:0 2em}
"""


@dataclasses.dataclass(frozen=True)
class VideoSources:
    """Where one video's frames and masks are.

    Attributes:
        frame_names: the processed frames in order (a memory trace's frame index points into it).
        predictions: folder of `<frame>.png` predicted index masks.
        ground_truth: folder of `<frame>.png` ground-truth masks, or None (unscored).
        images: frame name -> RGB image file (frames without one show their masks over black).
    """

    frame_names: tuple[str, ...]
    predictions: Path
    ground_truth: Optional[Path] = None
    images: Mapping[str, Path] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunHeader:
    """The page's header: `title`, then (label, value, measured) facts in order; `scores` the global scores or None."""

    title: str
    facts: Sequence[tuple[str, str, bool]]
    scores: Optional[Mapping[str, float]] = None


def run_header(config: Config, *, dataset: str, sha256: str, device: str, records: Mapping[str, Mapping[str, Any]],
               peak_memory: str, problems: Mapping[str, Mapping[str, str]],
               scores: Optional[Mapping[str, float]]) -> RunHeader:
    """An eval run's header: checkpoint and its SHA-256, dataset, changed settings, device, FPS over `records`
    (every finished video's record: `frames`, `seconds`), `peak_memory` (text), the date, then one line per video
    in `problems` (heading such as "FAILED" -> {video: message})."""
    frames = sum(record["frames"] for record in records.values())
    seconds = sum(record["seconds"] for record in records.values())
    facts = [("checkpoint", config.eval.model, False), ("SHA-256", sha256, False),
             ("dataset", f"{dataset}, {len(records)} videos", False),
             ("settings changed", ", ".join(differing_settings(config)) or "none (the defaults)", False),
             ("device", device, False),
             ("FPS", f"{frames / seconds:.2f} ({frames} frames, data loading excluded)" if seconds > 0 else "–",
              True),
             ("peak memory", peak_memory, True), ("date", utc_now(), True)]
    facts += [(f"{heading} {name}", message, False) for heading, videos in problems.items()
              for name, message in videos.items()]
    return RunHeader(f"{dataset}: {Path(config.eval.model).name}", facts, scores)


def differing_settings(config: Config) -> list[str]:
    """`section.field=value` for every model / inference setting and output-shaping eval setting that differs
    from the schema's default (the sidecar's switches included)."""
    default = Config()
    changed = []
    for section in ("model", "inference"):
        current, reference = dataclasses.asdict(getattr(config, section)), dataclasses.asdict(getattr(default, section))
        changed += [f"{section}.{key}={value}" for key, value in current.items() if value != reference[key]]
    changed += [f"eval.{name}={getattr(config.eval, name)}" for name in SHOWN_EVAL_SETTINGS
                if getattr(config.eval, name) != getattr(default.eval, name)]
    return changed


def utc_now() -> str:
    """The page's date: UTC, to the minute."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def write_page_or_warn(write: Callable[[], Path]) -> Optional[Path]:
    """Run a page writer and log (info) where the page went and how long it took; on any error log one warning
    line instead and return None (a page never fails a run)."""
    started = time.perf_counter()
    try:
        page = write()
    except Exception as error:  # noqa: BLE001 - whatever breaks in a page, the run's results stand
        logger.warning("report page not written: %s: %s", type(error).__name__, " ".join(str(error).split()))
        return None
    logger.info("report page %s written in %.2f s", page, time.perf_counter() - started)
    return page


# ------------------------------------------------------------------------------------------------ small pieces
def html_text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table_number(value: float) -> str:
    return "nan" if math.isnan(value) else TABLE_NUMBER_FORMAT.format(value)


def score_cell(value: float, column: str) -> str:
    """A score × 100 with one decimal; `data-value` holds the tables' exact text."""
    shown = "–" if math.isnan(value) else f"{PERCENT * value:.1f}"
    return f'<td data-column="{html_text(column)}" data-value="{_table_number(value)}">{shown}</td>'


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def html_href(path: str) -> str:
    return html_text(urllib.parse.quote(path))


def _mask_names(folder: Optional[Path]) -> list[str]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.iterdir()
                  if path.suffix == MASK_SUFFIX and not path.name.startswith("."))


def _scored_frames(sources: VideoSources) -> list[str]:
    """The frames scored, in order: ground-truth frames with a prediction, but the first and the last (as
    `inference.evaluation.folder_evaluation` lists them)."""
    predicted = set(_mask_names(sources.predictions))
    return [name for name in _mask_names(sources.ground_truth) if name in predicted][1:-1]


def _object_jf(scores: ObjectScores) -> float:
    return (scores.j_mean + scores.f_mean) / 2


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def mean_video_jf(objects: Sequence[ObjectScores]) -> float:
    return _mean([_object_jf(scores) for scores in objects])


# -------------------------------------------------------------------------------------------------------- page
def _sheet_frames(scored: Sequence[str], objects: Sequence[ObjectScores],
                  predicted: Sequence[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(frame, caption)]) groups of the contact sheet: the worst and the best scored frames by J&F over
    the objects scored on them, or evenly spaced predicted frames without scores."""
    frame_scores: dict[str, list[float]] = {}
    for scores in objects:
        for name, j, f in zip(scored[len(scored) - len(scores.frame_j):], scores.frame_j, scores.frame_f):
            frame_scores.setdefault(name, []).append((j + f) / 2)
    if frame_scores:
        order = sorted(frame_scores, key=lambda name: (float(np.mean(frame_scores[name])), name))
        worst = order[:SHEET_FRAMES]
        best = [name for name in reversed(order) if name not in worst][:SHEET_FRAMES]

        def captions(names: Sequence[str]) -> list[tuple[str, str]]:
            return [(name, f"{name}: J&F {PERCENT * np.mean(frame_scores[name]):.1f}") for name in names]

        return [("worst frames", captions(worst)), ("best frames", captions(best))]
    if not predicted:
        return []
    picks = sorted(set(np.linspace(0, len(predicted) - 1, 2 * SHEET_FRAMES).round().astype(int).tolist()))
    return [("evenly spaced frames", [(predicted[index], predicted[index]) for index in picks])]


def _video_section(position: int, name: str, objects: Sequence[ObjectScores], record: Mapping[str, Any],
                   sources: VideoSources, images_dir: Path) -> str:
    scored = _scored_frames(sources) if objects else []
    predicted = _mask_names(sources.predictions)
    positions = {frame: index for index, frame in enumerate(sources.frame_names)}
    num_frames = int(record.get("frames") or len(sources.frame_names) or len(predicted))
    palette = read_index_mask(sources.predictions / f"{predicted[0]}{MASK_SUFFIX}")[1] if predicted else None
    colours = report_figures.palette_colours(palette)
    parts = [f'<section id="v{position}"><h2>{html_text(name)}</h2>']
    facts = [f"{num_frames} frames"]
    if record.get("fps") is not None:
        facts.append(f'<span class="measured">{float(record["fps"]):.2f} FPS</span>')
    if objects:
        facts.append(f'J&amp;F {PERCENT * mean_video_jf(objects):.1f}')
    parts.append(f'<p>{" · ".join(facts)} · <a href="#top">top</a></p>')
    plots = []
    if objects and any(scores.frame_j for scores in objects):
        plots.append(report_figures.scores_plot(objects, scored, positions, colours, num_frames))
    if record.get("memory_trace"):
        plots.append(report_figures.memory_plot(record["memory_trace"], num_frames))
    width = f'style="width:{report_figures.PLOT_WIDTH_PX}px"'  # legends wrap under their plot
    parts.append('<div class="plots">' + "".join(f"<div {width}>{plot}</div>" for plot in plots) + "</div>")
    if sources.ground_truth is not None:
        parts.append('<p class="note">contact sheet: each frame shows the prediction above its ground truth, where '
                     "there is one</p>")
    folder = f"{position:04d}_{_slug(name)}"
    for title, frames in _sheet_frames(scored, objects, predicted):
        parts.append(f'<div class="sheet"><h3>{html_text(title)}</h3>')
        for frame, caption in frames:
            relative = f"{IMAGES_FOLDER}/{folder}/{_slug(frame)}.jpg"
            destination = images_dir / folder / f"{_slug(frame)}.jpg"
            destination.parent.mkdir(parents=True, exist_ok=True)
            truth = None if sources.ground_truth is None else sources.ground_truth / f"{frame}{MASK_SUFFIX}"
            report_figures.save_tile(report_figures.tile(sources.predictions / f"{frame}{MASK_SUFFIX}", truth,
                                                         sources.images.get(frame)), destination)
            parts.append(f'<figure><img src="{html_href(relative)}" alt="{html_text(caption)}" '
                         f'width="{report_figures.TILE_WIDTH_PX}">'
                         f"<figcaption>{html_text(caption)}</figcaption></figure>")
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _header(header: RunHeader) -> str:
    measured_class = ' class="measured"'
    facts = "".join(f"<dt>{html_text(label)}</dt><dd{measured_class if measured else ''}>{html_text(value)}</dd>"
                    for label, value, measured in header.facts)
    parts = [f'<h1 id="top">{html_text(header.title)}</h1><dl>{facts}</dl>']
    if header.scores is not None:
        cells = "".join(score_cell(header.scores[column], column) for column in GLOBAL_COLUMNS)
        parts.append(f'<table id="global"><tr>{"".join(f"<th>{html_text(c)}</th>" for c in GLOBAL_COLUMNS)}</tr>'
                     f'<tr data-name="global">{cells}</tr></table>')
    return "".join(parts)


def _ranking(order: Sequence[str], by_video: Mapping[str, list[ObjectScores]], records: Mapping[str, Any],
             positions: Mapping[str, int]) -> str:
    """The worst-first table: each video (mean over its objects), then its objects, worst first."""
    scored = any(by_video.values())
    heads = ["video / object"] + (["J&F", "J", "F"] if scored else []) + ["frames", "first–last frame", "FPS"]
    rows = ["<table id=ranking><tr>" + "".join(f"<th>{html_text(head)}</th>" for head in heads) + "</tr>"]
    for name in order:
        objects = by_video.get(name, [])
        record = records.get(name, {})
        fps = record.get("fps")
        fps_cell = f'<td class="measured">{"–" if fps is None else f"{float(fps):.2f}"}</td>'
        link = f'<a href="#v{positions[name]}">{html_text(name)}</a>'
        cells = ""
        if scored:
            cells = "".join(score_cell(value, column) for column, value in (
                ("J&F", mean_video_jf(objects)), ("J-Mean", _mean([s.j_mean for s in objects])),
                ("F-Mean", _mean([s.f_mean for s in objects]))))
        rows.append(f'<tr class="video" data-name="{html_text(name)}"><td>{link}</td>{cells}'
                    f'<td>{record.get("frames", "–")}</td><td></td>{fps_cell}</tr>')
        spans = record.get("object_frames", {})
        if not objects:  # unscored: the objects the run predicted, with their spans
            blanks = "<td></td>" * 3 if scored else ""
            for object_id, (first, last) in sorted(spans.items(), key=lambda item: int(item[0])):
                rows.append(f"<tr class=\"predicted\"><td>object {html_text(object_id)}</td>{blanks}<td></td>"
                            f"<td>{first}–{last}</td><td></td></tr>")
        for scores in sorted(objects, key=lambda scores: (_object_jf(scores), scores.object_id)):
            first, last = spans.get(str(scores.object_id), ("–", "–"))
            rows.append(f'<tr class="object" data-name="{html_text(scores.name)}"><td>object {scores.object_id}</td>'
                        f"{score_cell(_object_jf(scores), 'J&F')}{score_cell(scores.j_mean, 'J-Mean')}"
                        f"{score_cell(scores.f_mean, 'F-Mean')}<td>{scores.num_frames}</td>"
                        f"<td>{first}–{last}</td><td></td></tr>")
    rows.append("</table>")
    explained = ("J&amp;F of a video: the mean over its objects; frames: of the video, and the frames an object is "
                 "scored on; " if scored else "frames: of the video; ")
    note = f'<p class="note">{explained}first–last frame: where the saved predictions hold the object.</p>'
    return "".join(rows) + note


def html_document(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html_text(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


def write_run_page(output_dir: Path, header: RunHeader, videos: Sequence[str], records: Mapping[str, Mapping],
                   sources: Callable[[str], VideoSources], results: Optional[EvaluationResults]) -> Path:
    """Write `<output_dir>/report.html` and its images (`<output_dir>/report/`, replaced whole).

    Args:
        output_dir: the run's output folder.
        header: what the header shows.
        videos: the finished videos, in the benchmark's order.
        records: video -> its finished record (`inference.video_runner.run_video`'s, as stored).
        sources: video -> where its frames and masks are.
        results: the run's scores, or None (unscored: no score columns, evenly spaced frames).
    Returns:
        the page's path.
    Raises:
        OSError, ValueError: an unreadable frame or mask, or the folder cannot be written.
    """
    output_dir = Path(output_dir)
    by_video: dict[str, list[ObjectScores]] = {name: [] for name in videos}
    for scores in results.objects if results is not None else ():
        by_video.setdefault(scores.sequence, []).append(scores)
    positions = {name: position for position, name in enumerate(videos)}
    scored_videos = [name for name in videos if by_video[name]]
    order = sorted(scored_videos, key=lambda name: (mean_video_jf(by_video[name]), name)) + [
        name for name in videos if not by_video[name]]
    for stale in output_dir.glob(f"{STAGING_PREFIX}*"):  # left by a run killed while writing its page
        shutil.rmtree(stale, ignore_errors=True)
    staging = output_dir / f"{STAGING_PREFIX}{os.getpid()}"  # mkdir: a normal folder's permissions
    staging.mkdir()
    try:
        sections = [_video_section(positions[name], name, by_video[name], records.get(name, {}), sources(name),
                                   staging) for name in order]
        body = _header(header) + _ranking(order, by_video, records, positions) + "".join(sections)
        images = output_dir / IMAGES_FOLDER
        if images.exists():
            shutil.rmtree(images)
        os.replace(staging, images)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    page = output_dir / PAGE_FILE
    atomic_write_text(page, html_document(header.title, body))
    return page
