"""scripts/evaluation/visualize.py: palette overlays, frame/mask matching, the .mp4 video and the contact sheet."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from configs.common import DAVIS_PALETTE
from dataset.image_io import read_image, write_image, write_index_mask
from scripts.evaluation import visualize

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "evaluation" / "visualize.py"
PALETTE = np.frombuffer(DAVIS_PALETTE, dtype=np.uint8).reshape(-1, 3)
HEIGHT, WIDTH = 48, 64


def square_mask(object_id: int = 1, *, top: int = 10, left: int = 20, size: int = 16) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[top:top + size, left:left + size] = object_id
    return mask


def grey_frame(value: int = 100) -> np.ndarray:
    return np.full((HEIGHT, WIDTH, 3), value, np.uint8)


def write_video_folders(root: Path, num_frames: int, *, masked=lambda index: True) -> tuple[Path, Path]:
    frames, masks = root / "frames", root / "masks"
    for index in range(num_frames):
        write_image(frames / f"{index:05d}.jpg", grey_frame(40 + 5 * index))
        if masked(index):
            write_index_mask(masks / f"{index:05d}.png", square_mask(1 + index % 2, left=2 * index))
    masks.mkdir(parents=True, exist_ok=True)
    return frames, masks


def test_overlay_blends_palette_colour_inside_objects_and_keeps_background():
    image, mask = grey_frame(100), square_mask(2)
    result = visualize.overlay(image, mask, alpha=0.25)
    interior = (slice(12, 24), slice(22, 34))  # away from the outline
    expected = np.rint(0.75 * 100 + 0.25 * PALETTE[2].astype(np.float64)).astype(np.uint8)
    assert (result[interior] == expected).all()
    assert (result[mask == 0] == 100).all()
    assert (result[10, 20:36] == PALETTE[2]).all()  # the outline is drawn in full colour


def test_overlay_resizes_a_mask_of_another_size_and_passes_frames_without_mask():
    small = square_mask(1)[::2, ::2]
    result = visualize.overlay(grey_frame(), small, alpha=1.0)
    assert (result[16, 28] == PALETTE[1]).all() and (result[40, 60] == 100).all()
    assert (visualize.overlay(grey_frame(), None) == grey_frame()).all()


def test_overlay_rejects_bad_alpha_and_images():
    with pytest.raises(ValueError, match=r"alpha 1.5 is invalid; expected a blending weight in \[0, 1\]"):
        visualize.overlay(grey_frame(), square_mask(), alpha=1.5)
    with pytest.raises(ValueError, match=r"image must be uint8 H×W×3, got float32 \(48, 64\)"):
        visualize.overlay(np.zeros((HEIGHT, WIDTH), np.float32), square_mask())


def test_frame_mask_pairs_match_by_stem_and_leave_unmasked_frames_bare(tmp_path):
    frames, masks = write_video_folders(tmp_path, 4, masked=lambda index: index % 2 == 0)
    pairs = visualize.frame_mask_pairs(frames, masks)
    assert [frame.name for frame, _ in pairs] == ["00000.jpg", "00001.jpg", "00002.jpg", "00003.jpg"]
    assert [None if mask is None else mask.name for _, mask in pairs] == ["00000.png", None, "00002.png", None]


def test_frame_mask_pairs_errors(tmp_path):
    frames, masks = write_video_folders(tmp_path, 2)
    with pytest.raises(FileNotFoundError, match="masks folder not found: .*nowhere"):
        visualize.frame_mask_pairs(frames, tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no frame \(.jpg/.jpeg/.png\) in .*empty; pass the folder of one video"):
        visualize.frame_mask_pairs(empty, masks)
    with pytest.raises(ValueError, match=r"no mask in .*empty matches a frame of .*frames \(e.g. 00000.png\)"):
        visualize.frame_mask_pairs(frames, empty)


def test_overlay_video_has_one_frame_per_input_frame(tmp_path):
    frames, masks = write_video_folders(tmp_path, 7)
    path = visualize.write_overlay_video(visualize.frame_mask_pairs(frames, masks), tmp_path / "out" / "v.mp4",
                                         fps=5)
    capture = cv2.VideoCapture(str(path))
    try:
        assert capture.isOpened()
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 7
        assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (WIDTH,
                                                                                                              HEIGHT)
        decoded = sum(1 for _ in iter(lambda: capture.read()[0] or None, None))
    finally:
        capture.release()
    assert decoded == 7
    assert [p.name for p in path.parent.iterdir()] == ["v.mp4"]  # no temporary file left behind


def test_overlay_video_errors(tmp_path):
    frames, masks = write_video_folders(tmp_path, 2)
    pairs = visualize.frame_mask_pairs(frames, masks)
    with pytest.raises(ValueError, match=r"video path .*v.avi must end in .mp4"):
        visualize.write_overlay_video(pairs, tmp_path / "v.avi")
    with pytest.raises(ValueError, match="fps 0 is invalid; expected a positive frame rate"):
        visualize.write_overlay_video(pairs, tmp_path / "v.mp4", fps=0)
    with pytest.raises(ValueError, match=r"no frame to write to .*v.mp4"):
        visualize.write_overlay_video([], tmp_path / "v.mp4")


def test_contact_sheet_grid_holds_evenly_spaced_first_and_last_frames(tmp_path):
    frames, masks = write_video_folders(tmp_path, 10)
    pairs = visualize.frame_mask_pairs(frames, masks)
    sheet = visualize.contact_sheet(pairs, num_frames=5, columns=3, alpha=1.0)
    gap = visualize.TILE_GAP_PX
    assert sheet.shape == (2 * HEIGHT + gap, 3 * WIDTH + 2 * gap, 3)
    # Tile 0 is frame 0 (object 1 at left 0), tile 4 (second row, second column) is frame 9 (object 2, left 18).
    assert (sheet[16, 4] == PALETTE[1]).all()
    last_top, last_left = HEIGHT + gap, WIDTH + gap
    assert (sheet[last_top + 16, last_left + 18 + 8] == PALETTE[2]).all()
    assert (sheet[HEIGHT:HEIGHT + gap] == 0).all()  # the gap between rows stays black


def test_contact_sheet_errors():
    with pytest.raises(ValueError, match="num_frames 0 and columns 6 must be at least 1"):
        visualize.contact_sheet([], num_frames=0)
    with pytest.raises(ValueError, match="no frame for the contact sheet"):
        visualize.contact_sheet([])


def test_cli_writes_video_and_sheet(tmp_path, capsys):
    frames, masks = write_video_folders(tmp_path, 3)
    visualize.main(["--frames", str(frames), "--masks", str(masks), "--video", str(tmp_path / "o.mp4"),
                    "--sheet", str(tmp_path / "o.png"), "--columns", "2"])
    assert "o.mp4: 3 frames at 10 fps" in capsys.readouterr().out
    assert read_image(tmp_path / "o.png").shape == (2 * HEIGHT + visualize.TILE_GAP_PX,
                                                    2 * WIDTH + visualize.TILE_GAP_PX, 3)
    with pytest.raises(SystemExit):
        visualize.main(["--frames", str(frames), "--masks", str(masks)])
    assert "nothing to write: pass --video OUT.mp4 and/or --sheet OUT.png" in capsys.readouterr().err


def write_mp4(path: Path, num_frames: int) -> Path:
    """A tiny .mp4 (MPEG-4 part 2) of grey frames getting brighter, as a phone or a screen recorder would give."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for index in range(num_frames):
        writer.write(grey_frame(40 + 30 * index))
    writer.release()
    return path


def test_an_mp4_is_accepted_as_the_frames_input(tmp_path):
    video = write_mp4(tmp_path / "clip.mp4", 5)
    masks = tmp_path / "masks"
    for index in (0, 2, 4):  # eval.py's names: frame i of the video is 0000i.png
        write_index_mask(masks / f"{index:05d}.png", square_mask(1 + index % 2, left=2 * index))
    pairs = visualize.frame_mask_pairs(video, masks)
    assert [(frame.stem, None if mask is None else mask.name) for frame, mask in pairs] == [
        ("00000", "00000.png"), ("00001", None), ("00002", "00002.png"), ("00003", None), ("00004", "00004.png")]
    overlay_video, sheet = tmp_path / "overlay.mp4", tmp_path / "sheet.png"
    visualize.main(["--frames", str(video), "--masks", str(masks), "--video", str(overlay_video), "--sheet",
                    str(sheet), "--columns", "5"])
    capture = cv2.VideoCapture(str(overlay_video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    capture.release()
    tiles = read_image(sheet)
    assert tiles.shape == (HEIGHT, 5 * WIDTH + 4 * 2, 3)
    brightness = [int(np.median(tiles[:, column * (WIDTH + 2):column * (WIDTH + 2) + WIDTH])) for column in range(5)]
    assert brightness == sorted(brightness) and brightness[-1] - brightness[0] > 60  # frames in video order
    first_tile = tiles[:, :WIDTH]
    assert (np.abs(first_tile[14:22, 4:12].astype(int) - (0.5 * 40 + 0.5 * PALETTE[1])).max(axis=-1) < 12).all()


def test_a_missing_video_is_one_error_line(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--frames", str(tmp_path / "absent.mp4"), "--masks", str(tmp_path), "--sheet",
         str(tmp_path / "sheet.png")], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(root)),
        timeout=300)
    assert completed.returncode == 1
    assert completed.stderr == f"error: video not found: {tmp_path / 'absent.mp4'}\n"
    assert not (tmp_path / "sheet.png").exists()
