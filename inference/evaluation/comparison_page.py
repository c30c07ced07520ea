"""The page that compares the rows of an ablation or study run (scripts/study/run_ablations.py, run_study.py).

`write_comparison_page` renders a runner's markdown table, its plots and, per benchmark, every video's J&F for each
row side by side, each row linking to its own run page (`inference.evaluation.report_page`), in the run page's style.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Mapping, Optional, Sequence

from configs.common import atomic_write_text
from inference.evaluation.metrics import ObjectScores
from inference.evaluation.report_page import html_document, html_href, html_text, mean_video_jf, score_cell

@dataclasses.dataclass(frozen=True)
class ComparisonRow:
    """One row of a comparison: its name, its run's page (or None) and its J&F per video (fractions)."""

    name: str
    run_page: Optional[Path]
    video_jf: Mapping[str, float]


def video_jf(objects: Sequence[ObjectScores]) -> dict[str, float]:
    """J&F per video (the mean over its objects of (J + F) / 2), in the objects' order."""
    by_video: dict[str, list[ObjectScores]] = {}
    for scores in objects:
        by_video.setdefault(scores.sequence, []).append(scores)
    return {name: mean_video_jf(group) for name, group in by_video.items()}


def video_jf_from_table(path: Path) -> dict[str, float]:
    """J&F per video from a `per_object_results.csv` (rows `<video>_<object id>`); {} when the file is missing."""
    path = Path(path)
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        objects = [ObjectScores(row["Sequence"].rpartition("_")[0], int(row["Sequence"].rpartition("_")[2]), 0,
                                float(row["J-Mean"]), math.nan, math.nan, float(row["F-Mean"]), math.nan, math.nan)
                   for row in csv.DictReader(handle)]
    return video_jf(objects)


def _markdown_html(markdown: str) -> str:
    """The runners' markdown (headings, pipe tables, text lines) as HTML."""
    parts, table = [], []

    def close_table() -> None:
        if table:
            cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table
                     if not re.fullmatch(r"\|?(\s*-+\s*\|)+\s*-*\s*", line.strip())]
            head, *body = cells
            parts.append("<table><tr>" + "".join(f"<th>{html_text(cell)}</th>" for cell in head) + "</tr>" + "".join(
                "<tr>" + "".join(f"<td>{html_text(cell)}</td>" for cell in row) + "</tr>" for row in body) + "</table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        close_table()
        if line.startswith("#"):
            parts.append(f"<h2>{html_text(line.lstrip('#').strip())}</h2>")
        elif line.strip():
            parts.append(f"<p>{html_text(line)}</p>")
    close_table()
    return "".join(parts)


def write_comparison_page(path: Path, *, title: str, markdown: str, plots: Sequence[Path],
                          sections: Mapping[str, Sequence[ComparisonRow]]) -> Path:
    """Write a page comparing rows: the runner's markdown table, its plots and, per section (benchmark), each
    video's J&F side by side, rows linking to their run pages.

    Args:
        path: the page (its folder must hold the plots and the run pages, which are linked relatively).
        title: the page's title.
        markdown: the runner's table (as its .md file).
        plots: images to show (missing ones are left out).
        sections: section title -> rows.
    Returns:
        `path`.
    Raises:
        OSError: the page cannot be written.
    """
    path = Path(path)
    parts = [f'<h1 id="top">{html_text(title)}</h1>', _markdown_html(markdown)]
    for plot in plots:
        if Path(plot).is_file():
            parts.append(f'<img src="{html_href(os.path.relpath(plot, path.parent))}" alt="{html_text(Path(plot).name)}" '
                         'style="max-width:100%">')
    for section, rows in sections.items():
        videos = list(dict.fromkeys(video for row in rows for video in row.video_jf))
        if not videos:
            continue
        heads = []
        for row in rows:
            name = html_text(row.name)
            heads.append(f'<th><a href="{html_href(os.path.relpath(row.run_page, path.parent))}">{name}</a></th>'
                         if row.run_page is not None and Path(row.run_page).is_file() else f"<th>{name}</th>")
        lines = [f"<h2>{html_text(section)}: J&amp;F per video</h2><table><tr><th>video</th>{''.join(heads)}</tr>"]
        for video in videos:
            cells = "".join(score_cell(row.video_jf[video], row.name) if video in row.video_jf else "<td>–</td>"
                            for row in rows)
            lines.append(f'<tr data-name="{html_text(video)}"><td>{html_text(video)}</td>{cells}</tr>')
        parts.append("".join(lines) + "</table>")
    atomic_write_text(path, html_document(title, "".join(parts)))
    return path
