"""The report page (inference/evaluation/report_page.py): its numbers are the result tables', worst first; every
link and image resolves inside the output folder; eval.py records the memory trace the page plots; a broken image
writer costs one warning and never the run; a real browser renders it (when Chromium is installed: .ci/run
installs it).

Pages of a resumed and of a two-rank torchrun run equal a fresh run's: tests/test_eval_distributed.py compares
report.html (measured values masked, `mask_measured`) and its images byte for byte with every other output.
"""
from __future__ import annotations

import csv
import dataclasses
import html.parser
import logging
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import eval as eval_cli
from dataset.synthetic import PRESETS, make_videos
from dataset.synthetic_layouts import write_davis
from inference.evaluation import report_figures, report_page
from inference.evaluation.run_summary import RunSummary
from tests.test_evaluate_script import evaluate_script

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"
FIXTURE_VIDEOS = ["blobs-a", "blobs-b", "blobs-c", "blobs-d", "odd-size"]
HEIGHT, WIDTH = 64, 112
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
SCREEN_WIDTH, SCREEN_HEIGHT = 1000, 1400
MIN_COLOURS_WITH_TILES = 10_000
SMALL_MEMORY = ("inference.mem_every=1", "inference.min_working_frames=2", "inference.max_working_frames=3",
                "inference.num_prototypes=20", "inference.max_long_term_elements=50")


class _Page(html.parser.HTMLParser):
    """What the tests read back from a page: ids, links, images, and every row with a data-name (its cells'
    data-column -> data-value)."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.links, self.images, self.tags = set(), [], [], set()
        self.rows: list[tuple[str, str, dict[str, str]]] = []  # (class, data-name, cells)
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a":
            self.links.append(attrs["href"])
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "tr" and "data-name" in attrs:
            self.rows.append((attrs.get("class", ""), attrs["data-name"], {}))
        if tag == "td" and "data-column" in attrs and self.rows:
            self.rows[-1][2][attrs["data-column"]] = attrs["data-value"]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _check_links(page_path: Path) -> _Page:
    """Every anchor names an id of the page, every other link and image a file inside the page's folder."""
    page = _Page(page_path.read_text())
    root = page_path.parent.resolve()
    for target in page.links + page.images:
        if target.startswith("#"):
            assert target[1:] in page.ids, target
            continue
        assert not urllib.parse.urlparse(target).scheme, target  # relative: no network, no absolute path
        path = (page_path.parent / urllib.parse.unquote(target)).resolve()
        assert path.is_file() and path.is_relative_to(root), target
    assert "script" not in page.tags
    return page


def _check_numbers_and_order(page: _Page, output: Path) -> None:
    """The page's numbers are the tables' text; videos come worst J&F first, and each video's objects too."""
    (global_row,) = _read_csv(output / "global_results.csv")
    assert [cells for _, name, cells in page.rows if name == "global"] == [global_row]
    objects = {row["Sequence"]: row for row in _read_csv(output / "per_object_results.csv")}
    shown = {name: cells for kind, name, cells in page.rows if kind == "object"}
    assert set(shown) == set(objects)
    for name, cells in shown.items():
        assert cells["J-Mean"] == objects[name]["J-Mean"] and cells["F-Mean"] == objects[name]["F-Mean"], name
    videos = [float(cells["J&F"]) for kind, _, cells in page.rows if kind == "video"]
    assert videos == sorted(videos) and len(set(videos)) > 1
    current: list[float] = []
    for kind, _, cells in page.rows + [("video", "", {})]:
        if kind == "video":
            assert current == sorted(current)
            current = []
        elif kind == "object":
            current.append(float(cells["J&F"]))


def test_folder_page_numbers_equal_the_tables_worst_first_and_links_resolve(tmp_path):
    """scripts/evaluation/evaluate.py on the metrics fixtures. Mutations checked by hand: sorting videos best first, a
    rounded data-value, and an absolute image path each fail this test."""
    for name in FIXTURE_VIDEOS:
        shutil.copytree(FIXTURES / "davis/Annotations/480p" / name, tmp_path / "gt" / name)
        shutil.copytree(FIXTURES / "pred" / name, tmp_path / "pred" / name)
    evaluate_script.main([str(tmp_path / "gt"), str(tmp_path / "pred"), "--num_processes", "1"])
    page = _check_links(tmp_path / "pred" / "report.html")
    _check_numbers_and_order(page, tmp_path / "pred")
    assert len(page.images) == len(FIXTURE_VIDEOS) * 2 * report_page.SHEET_FRAMES  # worst and best, every video
    with Image.open(tmp_path / "pred" / urllib.parse.unquote(page.images[0])) as tile:
        assert tile.width == report_figures.TILE_WIDTH_PX


def _davis(root: Path, num_videos: int = 2, num_frames: int = 7) -> Path:
    difficulty = dataclasses.replace(PRESETS["easy"], min_objects=2, max_objects=2)
    write_davis(root / "trainval", {}, make_videos(num_videos, seed=3, num_frames=num_frames, height=HEIGHT,
                                                   width=WIDTH, difficulty=difficulty))
    return root


def _eval(checkpoint: Path, root: Path, output: Path, *overrides: str) -> RunSummary:
    with pytest.warns(UserWarning, match="uses the 480p frames"):
        return eval_cli.main(["--model", str(checkpoint), "--dataset", "D17", "--d17_path", str(root), "--size", "-1",
                              "--output", str(output), "eval.device=cpu", *SMALL_MEMORY, *overrides])


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, recipe_checkpoint_path) -> tuple[Path, RunSummary]:
    """eval.py on two 7-frame videos with a small memory (consolidation and pruning happen): (output, summary)."""
    folder = tmp_path_factory.mktemp("report")
    output = folder / "out"
    return output, _eval(recipe_checkpoint_path, _davis(folder / "DAVIS"), output)


def test_eval_page_shows_the_tables_numbers_the_memory_trace_and_resolving_links(small_run):
    """Mutations checked by hand: not counting consolidations in MemoryManager (no marker, trace check fails) and
    leaving the ground truth out of the tiles (tile height) each fail this test."""
    output, summary = small_run
    assert summary.page == output / "report.html" and f"report page: {summary.page}" in summary.report
    page = _check_links(summary.page)
    _check_numbers_and_order(page, output)
    text = summary.page.read_text()
    for name in ("synth0000", "synth0001"):
        record = eval_cli.ResultWriter(output, "davis").finished_record(name)
        trace = record["memory_trace"]
        rows = [dict(zip(trace["columns"], row)) for row in trace["rows"]]
        assert rows[-1]["working_elements"] == record["working_elements"]
        assert rows[-1]["long_term_elements"] == record["long_term_elements"]
        assert rows[-1]["consolidations"] > 0 and rows[-1]["pruned_elements"] > 0
        for row in rows:
            assert row["working_elements"] <= 3 * trace["elements_per_frame"] and row["long_term_elements"] <= 50
        assert record["object_frames"] == {"1": [0, 6], "2": [0, 6]}
        assert f"consolidation ({rows[-1]['consolidations']})" in text
    assert text.count(f'stroke="{report_figures.CONSOLIDATION_COLOUR}"') > 0
    assert text.count(f'stroke="{report_figures.PRUNING_COLOUR}"') > 0
    with Image.open(output / urllib.parse.unquote(page.images[0])) as tile:  # prediction above ground truth
        assert tile.size == (report_figures.TILE_WIDTH_PX, 2 * round(HEIGHT * report_figures.TILE_WIDTH_PX / WIDTH)
                             + report_figures.TILE_GAP_PX)


def test_a_broken_image_writer_costs_one_warning_and_never_the_run(tmp_path, recipe_checkpoint_path, monkeypatch,
                                                                    caplog):
    """Mutation checked by hand: without `write_page_or_warn` in eval.py the OSError ends the run."""
    def broken(image, path):
        raise OSError(f"No space left on device: {path}")

    monkeypatch.setattr(report_figures, "save_tile", broken)
    with caplog.at_level(logging.WARNING):
        summary = _eval(recipe_checkpoint_path, _davis(tmp_path / "DAVIS", num_videos=1, num_frames=4),
                        tmp_path / "out", "eval.io_queue_frames=0")
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.name for record in warnings] == ["inference.evaluation.report_page"]
    assert warnings[0].getMessage().startswith("report page not written: OSError: No space left on device")
    assert "\n" not in warnings[0].getMessage()
    assert summary.page is None and summary.scores is not None and not summary.failed
    assert (tmp_path / "out" / "global_results.csv").is_file() and not (tmp_path / "out" / "report.html").exists()
    assert not any(path.name.startswith(".report") for path in (tmp_path / "out").iterdir())  # no staging left


def test_eval_report_false_writes_no_page(tmp_path, recipe_checkpoint_path):
    summary = _eval(recipe_checkpoint_path, _davis(tmp_path / "DAVIS", num_videos=1, num_frames=4),
                    tmp_path / "out", "eval.report=false")
    assert summary.page is None and not (tmp_path / "out" / "report.html").exists()
    assert not (tmp_path / "out" / report_page.IMAGES_FOLDER).exists()


def mask_measured(text: str) -> str:
    """A page without its measured values (timings, memory, date): what two runs of the same outputs share."""
    return re.sub(r'<(\w+) class="measured">[^<]*</\1>', "", text)


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Chromium is not installed (apt-get install chromium; .ci/run "
                                                    "installs it)")
def test_chromium_renders_the_page(small_run, tmp_path):
    """Headless Chromium renders the page offline, from a copy of the output folder. Mutation checked by hand: a
    page whose image links point outside the copy (e.g. absolute paths of a deleted folder) fails the colour check."""
    output, summary = small_run
    copy = tmp_path / "copied"  # a copied folder still shows everything
    shutil.copytree(output, copy)
    screenshot = tmp_path / "page.png"
    completed = subprocess.run(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={screenshot}",
         f"--window-size={SCREEN_WIDTH},{SCREEN_HEIGHT}", (copy / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0 and screenshot.is_file(), completed.stderr[-2000:]
    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape == (SCREEN_HEIGHT, SCREEN_WIDTH, 3)
    # The tiles were drawn: frames add thousands of colours that text, tables and plots never have (about 1,600
    # without the images, some 50,000 with them).
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > MIN_COLOURS_WITH_TILES


def test_an_unscored_run_gets_the_page_without_scores_and_with_evenly_spaced_frames(tmp_path):
    """Mutation checked by hand: picking the first frames instead of evenly spaced ones fails this test."""
    predictions = tmp_path / "out"
    for name in FIXTURE_VIDEOS[:2]:
        shutil.copytree(FIXTURES / "pred" / name, predictions / name)

    def sources(video: str) -> report_page.VideoSources:
        frames = tuple(sorted(path.stem for path in (predictions / video).glob("*.png")))
        return report_page.VideoSources(frames, predictions / video)

    header = report_page.RunHeader("unscored", [("date", report_page.utc_now(), True)])
    (predictions / f"{report_page.STAGING_PREFIX}killed" / "0000_x").mkdir(parents=True)  # a killed page's images
    records = {"blobs-a": {"frames": 25, "object_frames": {"2": [3, 24], "1": [0, 20]}}}
    path = report_page.write_run_page(predictions, header, FIXTURE_VIDEOS[:2], records, sources, None)
    page = _check_links(path)
    assert not list(predictions.glob(f"{report_page.STAGING_PREFIX}*"))
    assert [name for kind, name, _ in page.rows if kind == "video"] == FIXTURE_VIDEOS[:2]  # benchmark order
    assert all(not cells for _, _, cells in page.rows) and "J&amp;F" not in path.read_text()
    assert re.search(r"object 1</td><td></td><td>0–20</td>.*object 2</td><td></td><td>3–24</td>", path.read_text())
    frames = sorted(path.stem for path in (predictions / "blobs-a").glob("*.png"))
    shown = [Path(urllib.parse.unquote(image)).stem for image in page.images if "blobs-a" in image]
    expected = np.linspace(0, len(frames) - 1, 2 * report_page.SHEET_FRAMES).round().astype(int)
    assert shown == [frames[index] for index in expected]
