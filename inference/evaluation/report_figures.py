"""The report page's figures: contact sheet tiles (Pillow) and small inline SVG line plots (no plotting library,
so the page needs nothing beyond the project's requirements and renders the same everywhere).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from PIL import Image

from configs.common import DAVIS_PALETTE
from dataset.image_io import read_image, read_index_mask
from inference.evaluation.metrics import ObjectScores

TILE_WIDTH_PX = 192  # contact sheet thumbnails; the prediction and the ground truth are stacked
TILE_GAP_PX = 2
OVERLAY_OPACITY = 0.55  # of an object's palette colour over the frame
JPEG_QUALITY = 85
PLOT_WIDTH_PX, PLOT_HEIGHT_PX = 520, 150
PLOT_MARGIN_PX = (28, 8, 22, 56)  # top, right, bottom, left
CONSOLIDATION_COLOUR, PRUNING_COLOUR = "#2a7ab0", "#c0392b"
PRUNING_DASH = "3 3"
F_DASH = "4 3"  # F per frame is dashed, J solid
WORKING_COLOUR, LONG_TERM_COLOUR = "#333333", "#8e44ad"


def palette_colours(palette: Optional[bytes]) -> np.ndarray:
    """256×3 uint8 colours of an index-mask palette (the DAVIS palette for grayscale masks)."""
    return np.frombuffer(palette or DAVIS_PALETTE, np.uint8)[: 256 * 3].reshape(-1, 3)


def _overlay(image: np.ndarray, mask: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """uint8 H×W×3 `image` with each object of the uint8 H×W `mask` blended in its palette colour and outlined in
    it (pixels whose right or lower neighbour holds another id)."""
    blended = image.astype(np.float32)
    objects = mask > 0
    blended[objects] = (1 - OVERLAY_OPACITY) * blended[objects] + OVERLAY_OPACITY * colours[mask[objects]]
    padded = np.pad(mask, ((0, 1), (0, 1)), mode="edge")
    outline = objects & ((mask != padded[:-1, 1:]) | (mask != padded[1:, :-1]))
    blended[outline] = colours[mask[outline]]
    return blended.round().astype(np.uint8)


def _thumbnail(array: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    return np.asarray(Image.fromarray(array).resize(size, resample))


def tile(prediction_file: Path, truth_file: Optional[Path], image_file: Optional[Path]) -> Image.Image:
    """One contact sheet tile, TILE_WIDTH_PX wide: the prediction over the frame (black without `image_file`), above
    the ground truth over the frame when `truth_file` exists; objects in the prediction's palette."""
    prediction, palette = read_index_mask(prediction_file)
    height, width = prediction.shape
    size = (TILE_WIDTH_PX, max(1, round(height * TILE_WIDTH_PX / width)))
    image = (np.zeros((*size[::-1], 3), np.uint8) if image_file is None
             else _thumbnail(read_image(image_file), size, Image.Resampling.BILINEAR))
    colours = palette_colours(palette)
    panels = [_overlay(image, _thumbnail(prediction, size, Image.Resampling.NEAREST), colours)]
    if truth_file is not None and truth_file.is_file():
        truth, _ = read_index_mask(truth_file)
        panels.append(_overlay(image, _thumbnail(truth, size, Image.Resampling.NEAREST), colours))
    gap = np.full((TILE_GAP_PX, size[0], 3), 255, np.uint8)
    stacked = [panels[0]] + [part for panel in panels[1:] for part in (gap, panel)]
    return Image.fromarray(np.concatenate(stacked))


def save_tile(image: Image.Image, path: Path) -> None:
    """Write a tile as JPEG (the page's only images)."""
    image.save(path, format="JPEG", quality=JPEG_QUALITY)


# ------------------------------------------------------------------------------------------------------- plots
def _svg_plot(series: Sequence[tuple[list[tuple[float, float]], str, str]],
              markers: Sequence[tuple[float, str, str]],
              x_max: float, y_range: tuple[float, float], y_label: str) -> str:
    """A small inline SVG line plot.

    Args:
        series: (points (x, y), colour, SVG dash pattern or "") per line.
        markers: (x, colour, SVG dash pattern or "") vertical lines.
        x_max: the x axis runs from 0 to x_max (frames).
        y_range: (low, high) of the y axis.
        y_label: the y axis's title.
    """
    top, right, bottom, left = PLOT_MARGIN_PX
    inner_width, inner_height = PLOT_WIDTH_PX - left - right, PLOT_HEIGHT_PX - top - bottom
    low, high = y_range
    span_x, span_y = max(x_max, 1), (high - low) or 1

    def x_px(x: float) -> float:
        return left + inner_width * x / span_x

    def y_px(y: float) -> float:
        return top + inner_height * (1 - (y - low) / span_y)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_WIDTH_PX}" height="{PLOT_HEIGHT_PX}" '
             f'viewBox="0 0 {PLOT_WIDTH_PX} {PLOT_HEIGHT_PX}" font-size="10" font-family="sans-serif">',
             f'<rect x="{left}" y="{top}" width="{inner_width}" height="{inner_height}" fill="none" stroke="#999"/>',
             f'<text x="{left}" y="{top - 8}">{html.escape(y_label)}</text>']
    for value in (low, high):
        parts.append(f'<text x="{left - 4}" y="{y_px(value) + 3:.1f}" text-anchor="end">{value:g}</text>')
    for value in (0, x_max):
        parts.append(f'<text x="{x_px(value):.1f}" y="{PLOT_HEIGHT_PX - 6}" text-anchor="middle">{value:g}</text>')
    parts.append(f'<text x="{left + inner_width / 2:.1f}" y="{PLOT_HEIGHT_PX - 6}" text-anchor="middle">frame</text>')
    for x, colour, dash in markers:
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<line x1="{x_px(x):.1f}" x2="{x_px(x):.1f}" y1="{top}" y2="{top + inner_height}" '
                     f'stroke="{colour}" stroke-opacity="0.7"{dashes}/>')
    for points, colour, dash in series:
        coordinates = " ".join(f"{x_px(x):.1f},{y_px(y):.1f}" for x, y in points)
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{colour}" stroke-width="1.5"{dashes}/>')
    parts.append("</svg>")
    return "".join(parts)


def _colour_hex(colours: np.ndarray, object_id: int) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colours[object_id % len(colours)])


def scores_plot(objects: Sequence[ObjectScores], scored: Sequence[str], positions: Mapping[str, int],
                colours: np.ndarray, num_frames: int) -> str:
    """J (solid) and F (dashed) per object over its scored frames, at their frame index in the video.

    Args:
        objects: the video's objects, with their per-frame scores.
        scored: the video's scored frames in order (an object is scored on the last len(frame_j) of them).
        positions: frame name -> its index in the video (a name not in it keeps its index in `scored`).
        colours: 256×3 uint8 palette colours (`palette_colours`).
        num_frames: the video's length (the x axis).
    Returns:
        SVG and a legend, as HTML.
    """
    series = []
    legend = []
    for scores in objects:
        frames = scored[len(scored) - len(scores.frame_j):]
        x = [positions.get(name, index) for index, name in enumerate(frames, len(scored) - len(frames))]
        colour = _colour_hex(colours, scores.object_id)
        series.append((list(zip(x, scores.frame_j)), colour, ""))
        series.append((list(zip(x, scores.frame_f)), colour, F_DASH))
        legend.append(f'<span style="color:{colour}">■</span><span>object {scores.object_id}</span>')
    plot = _svg_plot(series, [], max(num_frames - 1, 1), (0.0, 1.0), "J (solid), F (dashed) per scored frame")
    return plot + f'<div class="legend">{"".join(legend)}</div>'


def memory_plot(trace: Mapping[str, Any], num_frames: int) -> str:
    """Working and long-term memory elements over the video, consolidations and pruning as vertical lines, from a
    record's `memory_trace` (`inference.video_runner.MemoryRecorder.as_record`); SVG and a legend, as HTML."""
    rows = [dict(zip(trace["columns"], row)) for row in trace["rows"]]
    if not rows:
        return '<p class="note">no memory trace</p>'
    last_frame = max(num_frames - 1, rows[-1]["frame"])

    def steps(key: str) -> list[tuple[float, float]]:
        points = []
        for row, following in zip(rows, rows[1:] + [{"frame": last_frame}]):
            points += [(row["frame"], row[key]), (following["frame"], row[key])]
        return points

    markers = []
    for previous, row in zip(rows, rows[1:]):
        if row["consolidations"] > previous["consolidations"]:
            markers.append((row["frame"], CONSOLIDATION_COLOUR, ""))
        if row["pruned_elements"] > previous["pruned_elements"]:  # dashed: it shares its frame with a consolidation
            markers.append((row["frame"], PRUNING_COLOUR, PRUNING_DASH))
    largest = max(max(row["working_elements"], row["long_term_elements"]) for row in rows)
    plot = _svg_plot([(steps("working_elements"), WORKING_COLOUR, ""), (steps("long_term_elements"),
                      LONG_TERM_COLOUR, "")], markers, last_frame, (0, largest or 1), "memory elements")
    consolidations = rows[-1]["consolidations"]
    pruned = rows[-1]["pruned_elements"]
    legend = (f'<div class="legend"><span style="color:{WORKING_COLOUR}">■ working</span>'
              f'<span style="color:{LONG_TERM_COLOUR}">■ long-term</span>'
              f'<span style="color:{CONSOLIDATION_COLOUR}">| consolidation ({consolidations})</span>'
              f'<span style="color:{PRUNING_COLOUR}">¦ pruning ({pruned} elements)</span>'
              f'<span>{trace["elements_per_frame"]} elements per memory frame</span></div>')
    return plot + legend
