"""eval.py end to end on tiny synthetic benchmarks with the recipe checkpoint, and the download script."""
import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import eval as eval_cli
from configs.loader import UnknownConfigKeyError
from configs.common import DAVIS_PALETTE, run_cli
from configs.output_settings import changed_settings, file_sha256, output_settings
from dataset import writers
from dataset.image_io import read_index_mask, write_image, write_index_mask
from dataset.synthetic import PRESETS, make_videos
from dataset.synthetic_layouts import write_davis, write_generic, write_long_video, write_youtube_valid
from dataset.writers import ResultWriter
from inference import video_runner
from inference.evaluation.run_summary import RunSummary
from scripts.data import download_models
from scripts.evaluation import merge_multi_scale


class _FileResponse:
    """What urlopen returns, serving a local file."""

    def __init__(self, path: Path):
        self._file = open(path, "rb")
        self.headers = {"Content-Length": str(path.stat().st_size)}

    def read(self, size: int) -> bytes:
        return self._file.read(size)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._file.close()


def test_download_models_checks_size_and_loads(tmp_path, recipe_checkpoint_path, monkeypatch):
    size = recipe_checkpoint_path.stat().st_size
    monkeypatch.setitem(download_models.MODEL_SIZES, "XMem.pth", size)
    requested = []

    def opener(url, timeout):
        requested.append(url)
        return _FileResponse(recipe_checkpoint_path)

    assert download_models.main(["--output", str(tmp_path)], opener=opener) == 0
    assert requested == ["https://github.com/hkchengrex/XMem/releases/download/v1.0/XMem.pth"]
    assert (tmp_path / "XMem.pth").stat().st_size == size
    assert download_models.main(["--output", str(tmp_path)], opener=opener) == 0
    assert len(requested) == 1  # a valid copy is kept

    monkeypatch.setitem(download_models.MODEL_SIZES, "XMem-s2.pth", size + 1)
    with pytest.raises(download_models.DownloadError, match=f"gave {size:,} bytes, expected {size + 1:,}"):
        download_models.fetch_model("XMem-s2.pth", tmp_path, opener)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["XMem.pth"]  # nothing half-written left


def test_download_models_offline_says_so_in_one_line(tmp_path, capsys):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    assert download_models.main(["--output", str(tmp_path)], opener=offline) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("error: cannot download https://github.com/hkchengrex/XMem/releases/download/v1.0/"
                            "XMem.pth (") and "are you offline?" in error
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyError, match="unknown model 'XMem-huge.pth'"):
        download_models.fetch_model("XMem-huge.pth", tmp_path)


# ------------------------------------------------------------------------------------------------ eval.py


HEIGHT, WIDTH = 64, 112
DAVIS_PALETTE_BYTES = DAVIS_PALETTE
CUSTOM_PALETTE = bytes(range(256)) * 3


def _videos(count, frames, *, seed=0, late=False):
    difficulty = PRESETS["easy"]
    if late:
        difficulty = dataclasses.replace(difficulty, min_objects=2, max_objects=2, late_entry_probability=1.0)
    return make_videos(count, seed=seed, num_frames=frames, height=HEIGHT, width=WIDTH, difficulty=difficulty)


def _run(model: Path, *arguments) -> RunSummary:
    return eval_cli.main(["--model", str(model), "eval.device=cpu", *map(str, arguments)])


def _png_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _check_mask(path: Path, palette, allowed_ids, shape=(HEIGHT, WIDTH)) -> np.ndarray:
    mask, file_palette = read_index_mask(path)
    assert mask.shape == shape and file_palette == palette, path
    assert set(np.unique(mask).tolist()) <= set(allowed_ids) | {0}, path
    return mask


def test_d17_val_outputs_scores_and_report(tmp_path, recipe_checkpoint_path):
    root = tmp_path / "DAVIS2017"
    write_davis(root / "trainval", {}, _videos(2, 4))
    # One video's annotations use their own palette: outputs must carry it.
    for path in (root / "trainval/Annotations/480p/synth0001").iterdir():
        mask, _ = read_index_mask(path)
        write_index_mask(path, mask, CUSTOM_PALETTE)
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="uses the 480p frames"):
        summary = _run(recipe_checkpoint_path, "--dataset", "D17", "--d17_path", root, "--size", -1,
                       "--output", out)
    assert summary.processed == ["synth0000", "synth0001"] and not summary.failed
    for video, palette in (("synth0000", DAVIS_PALETTE_BYTES), ("synth0001", CUSTOM_PALETTE)):
        first, _ = read_index_mask(root / f"trainval/Annotations/480p/{video}/00000.png")
        assert _png_names(out / video) == [f"{i:05d}.png" for i in range(4)]
        ids = set(np.unique(first).tolist())
        written = _check_mask(out / video / "00000.png", palette, ids)
        assert np.array_equal(written, first)  # the annotated frame is written back as given
        for index in range(1, 4):
            _check_mask(out / video / f"{index:05d}.png", palette, ids)
    assert summary.frames == 8 and summary.fps > 0 and summary.peak_memory_mb > 0
    assert summary.peak_memory_kind == "process peak RSS"
    assert set(summary.scores) >= {"J&F-Mean", "J-Mean", "F-Mean"}
    assert "J&F-Mean" in summary.report and "FPS" in summary.report
    timings = (out / "timings.csv").read_text().splitlines()
    assert timings[0] == "video,frames,saved_frames,objects,seconds,fps" and len(timings) == 3
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["eval"]["dataset"] == "D17" and resolved["eval"]["size"] == -1
    assert summary.zip is None


def test_y19_late_objects_sparse_saving_and_zip(tmp_path, recipe_checkpoint_path):
    root = tmp_path / "YouTube"
    write_youtube_valid(root, _videos(1, 11, seed=4, late=True))
    meta = json.loads((root / "valid/meta.json").read_text())["videos"]["synth0000"]["objects"]
    late_id = max(meta, key=lambda object_id: meta[object_id]["frames"][0])
    late_first = meta[late_id]["frames"][0]
    assert late_first != "00000"  # the video really has a late object
    out = tmp_path / "Y19_val"
    summary = _run(recipe_checkpoint_path, "--dataset", "Y19", "--y19_path", root, "--size", -1, "--output", out)
    saved = sorted({frame for info in meta.values() for frame in info["frames"]})
    assert _png_names(out / "Annotations/synth0000") == [f"{frame}.png" for frame in saved]
    late_annotation, _ = read_index_mask(root / f"valid/Annotations/synth0000/{late_first}.png")
    for frame in saved:
        mask = _check_mask(out / f"Annotations/synth0000/{frame}.png", DAVIS_PALETTE_BYTES, {1, 2})
        if frame < late_first:
            assert int(late_id) not in mask
        if frame == late_first:  # the late object's annotation is taken as given on its first frame
            assert np.array_equal(mask == int(late_id), late_annotation == int(late_id))
    assert summary.zip == out / "Y19_val.zip"
    assert sorted(zipfile.ZipFile(summary.zip).namelist()) == [
        f"Annotations/synth0000/{frame}.png" for frame in saved]
    assert summary.scores is not None  # the synthetic set has a local GroundTruth folder


def test_long_video_saves_and_scores_sparse_ground_truth(tmp_path, recipe_checkpoint_path):
    write_long_video(tmp_path / "lv", _videos(1, 9), annotation_every=4)
    out = tmp_path / "lv_out"
    with pytest.warns(UserWarning, match="native resolution"):
        summary = _run(recipe_checkpoint_path, "--dataset", "LV1", "--lv_path", tmp_path / "lv", "--output", out)
    assert _png_names(out / "synth0000") == ["00000.png", "00004.png", "00008.png"]
    first, _ = read_index_mask(tmp_path / "lv/long_video/Annotations/synth0000/00000.png")
    for name in _png_names(out / "synth0000"):
        _check_mask(out / "synth0000" / name, DAVIS_PALETTE_BYTES, set(np.unique(first).tolist()))
    assert summary.frames == 9 and summary.scores is not None


def test_generic_resized_scores_flip_and_merge(tmp_path, recipe_checkpoint_path):
    write_generic(tmp_path / "g", _videos(1, 3))
    common = ["--dataset", "G", "--generic_path", tmp_path / "g", "--size", 48, "--save_scores"]
    plain = _run(recipe_checkpoint_path, *common, "--output", tmp_path / "plain")
    flipped = _run(recipe_checkpoint_path, *common, "--flip", "--output", tmp_path / "flip")
    assert plain.processed == flipped.processed == ["synth0000"]
    first, _ = read_index_mask(tmp_path / "g/Annotations/synth0000/00000.png")
    ids = sorted(set(np.unique(first).tolist()) - {0})
    for run in ("plain", "flip"):
        names = _png_names(tmp_path / run / "synth0000")
        assert names == ["00000.png", "00001.png", "00002.png"]  # G saves every frame, at the original size
        for name in names:
            _check_mask(tmp_path / run / "synth0000" / name, DAVIS_PALETTE_BYTES, ids)
        with np.load(tmp_path / run / "Scores/synth0000/00001.npz") as scores:
            assert scores["prob"].dtype == np.float16 and scores["prob"].shape == (len(ids) + 1, HEIGHT, WIDTH)
            assert scores["labels"].tolist() == ids
            assert np.allclose(scores["prob"].astype(np.float32).sum(0), 1, atol=1e-2)
            mask, _ = read_index_mask(tmp_path / run / "synth0000/00001.png")
            lookup = np.array([0] + ids)
            # float16 storage may flip near-ties
            assert (lookup[scores["prob"].argmax(0)] == mask).mean() > 0.99
    merge_multi_scale.main(["--list", str(tmp_path / "plain"), str(tmp_path / "flip"),
                            "--output", str(tmp_path / "merged")])
    assert _png_names(tmp_path / "merged/synth0000") == ["00000.png", "00001.png", "00002.png"]
    for name in _png_names(tmp_path / "merged/synth0000"):
        _check_mask(tmp_path / "merged/synth0000" / name, DAVIS_PALETTE_BYTES, ids)


def test_d16_object_255_is_written_back(tmp_path, recipe_checkpoint_path):
    difficulty = dataclasses.replace(PRESETS["easy"], min_objects=1, max_objects=1)
    videos = make_videos(1, seed=2, num_frames=3, height=HEIGHT, width=WIDTH, difficulty=difficulty)
    write_davis(tmp_path / "DAVIS/2016", {}, videos, single_object_255=True)
    summary = _run(recipe_checkpoint_path, "--dataset", "D16", "--d16_path", tmp_path / "DAVIS/2016",
                   "--size", 480 // 10, "--output", tmp_path / "d16")
    first, _ = read_index_mask(tmp_path / "DAVIS/2016/Annotations/480p/synth0000/00000.png")
    assert set(np.unique(first).tolist()) == {0, 255}
    for name in _png_names(tmp_path / "d16/synth0000"):
        _check_mask(tmp_path / "d16/synth0000" / name, None, {255})
    assert summary.scores is not None


def test_resume_skips_finished_videos_overwrite_redoes_and_a_killed_run_is_redone(tmp_path, recipe_checkpoint_path,
                                                                                  monkeypatch):
    write_generic(tmp_path / "g", _videos(2, 3))
    arguments = ["--dataset", "G", "--generic_path", tmp_path / "g", "--size", -1, "--output", tmp_path / "out"]
    original_write = ResultWriter.write_mask

    def killed_on_second_video(self, video, frame, mask, palette):
        if video == "synth0001" and frame == "00001":
            raise KeyboardInterrupt  # the run dies mid-video, after frame 00000 was written
        original_write(self, video, frame, mask, palette)

    monkeypatch.setattr(ResultWriter, "write_mask", killed_on_second_video)
    with pytest.raises(KeyboardInterrupt):
        _run(recipe_checkpoint_path, *arguments)
    monkeypatch.setattr(ResultWriter, "write_mask", original_write)
    leftovers = [p.name for p in (tmp_path / "out/synth0001").iterdir()]
    assert leftovers == ["00000.png"]  # whole files only, and no completion marker for the video

    resumed = _run(recipe_checkpoint_path, *arguments)
    assert resumed.skipped_finished == ["synth0000"] and resumed.processed == ["synth0001"]
    assert _png_names(tmp_path / "out/synth0001") == ["00000.png", "00001.png", "00002.png"]
    assert len((tmp_path / "out/timings.csv").read_text().splitlines()) == 3  # both videos reported

    again = _run(recipe_checkpoint_path, *arguments)
    assert again.skipped_finished == ["synth0000", "synth0001"] and again.frames == 0
    redone = _run(recipe_checkpoint_path, *arguments, "--overwrite")
    assert redone.processed == ["synth0000", "synth0001"] and redone.frames == 6


def test_bad_videos_fail_alone_empty_is_skipped_and_one_frame_is_written_back(tmp_path, recipe_checkpoint_path,
                                                                             caplog):
    root = tmp_path / "g"
    write_generic(root, _videos(1, 2))
    single = make_videos(1, seed=9, num_frames=1, height=HEIGHT, width=WIDTH, difficulty=PRESETS["easy"])
    write_generic(root, {"single": single["synth0000"]})
    for name in ("nomask", "blank"):
        write_image(root / f"JPEGImages/{name}/00000.jpg", np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    write_index_mask(root / "Annotations/blank/00000.png", np.zeros((HEIGHT, WIDTH), np.uint8))
    with pytest.warns(UserWarning, match="first mask of video 'blank'.*holds no object"):
        summary = _run(recipe_checkpoint_path, "--dataset", "G", "--generic_path", root, "--size", -1,
                       "--output", tmp_path / "out")
    assert summary.processed == ["single", "synth0000"] and summary.skipped_empty == ["blank"]
    assert list(summary.failed) == ["nomask"] and "video 'nomask' has no mask" in summary.failed["nomask"]
    assert "video nomask failed: video 'nomask' has no mask" in caplog.text
    assert "FAILED nomask: video 'nomask' has no mask" in summary.report
    given, _ = read_index_mask(root / "Annotations/single/00000.png")
    written, _ = read_index_mask(tmp_path / "out/single/00000.png")
    assert np.array_equal(written, given)
    assert not (tmp_path / "out/nomask").exists() and not (tmp_path / "out/blank").exists()


def test_original_flags_presets_and_overrides_resolve_onto_the_schema(tmp_path):
    config = eval_cli.resolve_config([
        "--dataset", "Y18", "--split", "test", "--max_mid_term_frames", "8", "--min_mid_term_frames", "3",
        "--max_long_term_elements", "5000", "--num_prototypes", "64", "--top_k", "20", "--mem_every", "3",
        "--deep_update_every", "7", "--disable_long_term", "--benchmark", "--save_all", "--save_scores", "--flip",
        "--size", "600", "--y18_path", "/data/yt18", "--output", "/tmp/o", "--overwrite", "--device", "cpu",
    ])
    memory, options = config.inference, config.eval
    assert (memory.max_working_frames, memory.min_working_frames, memory.max_long_term_elements) == (8, 3, 5000)
    assert (memory.num_prototypes, memory.top_k, memory.mem_every, memory.deep_update_every) == (64, 20, 3, 7)
    assert memory.enable_long_term is False and memory.use_amp == "off"
    assert (options.dataset, options.split, options.size, options.y18_path) == ("Y18", "test", 600, "/data/yt18")
    assert options.save_all and options.save_scores and options.flip and options.overwrite
    preset = eval_cli.resolve_config(["--config", "eval/lv1", "inference.top_k=10", "--mem_every", "2"])
    assert (preset.eval.dataset, preset.eval.size, preset.inference.top_k) == ("LV1", -1, 10)
    assert preset.inference.mem_every == 2
    with pytest.raises(UnknownConfigKeyError, match="inference.topk"):
        eval_cli.resolve_config(["inference.topk=3"])


def test_missing_dataset_path_fails_before_loading_the_network(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"D17 root \(d17_path\) not found: .*absent"):
        eval_cli.main(["--dataset", "D17", "--d17_path", str(tmp_path / "absent"), "--model", "unused.pth"])
    (tmp_path / "g/JPEGImages").mkdir(parents=True)
    (tmp_path / "g/Annotations").mkdir()
    with pytest.raises(FileNotFoundError, match="checkpoint file not found: 'missing.pth'"):
        eval_cli.main(["--dataset", "G", "--generic_path", str(tmp_path / "g"), "--model", "missing.pth",
                       "--output", str(tmp_path / "o")])


def test_eval_reproduces_the_originals_probabilities_on_the_golden_video(tmp_path, recipe_checkpoint_path):
    """The whole eval path (reading, no resize, object order, score files) against the original's run of the
    60-frame fixture video with the small-memory settings given through the original's flags (consolidation and
    long-term pruning included)."""
    fixtures = Path(__file__).parent / "fixtures"
    summary = _run(recipe_checkpoint_path, "--dataset", "G", "--generic_path", fixtures / "inference_video",
                   "--size", -1, "--save_scores", "--benchmark", "--max_mid_term_frames", 4,
                   "--min_mid_term_frames", 2, "--num_prototypes", 16, "--max_long_term_elements", 70,
                   "--mem_every", 2, "--output", tmp_path / "out")
    assert summary.processed == ["vid00"] and summary.frames == 60
    with np.load(fixtures / "inference_golden_small_memory.npz") as golden:
        frames = sorted(key for key in golden.files if key.startswith("prob_"))
        assert len(frames) >= 20
        for key in frames:
            expected = golden[key].astype(np.float32)
            with np.load(tmp_path / f"out/Scores/vid00/{key[len('prob_'):]}.npz") as scores:
                assert scores["labels"].tolist() == [1, 2]
                # fixture tolerance 2e-3 (float16 storage on both sides)
                assert np.abs(scores["prob"].astype(np.float32) - expected).max() < 2e-3, key




GOLDEN_EVAL_ARGUMENTS = ("--dataset", "G", "--size", "-1", "--save_scores", "--max_mid_term_frames", "4",
                         "--min_mid_term_frames", "2", "--num_prototypes", "16", "--max_long_term_elements", "70",
                         "--mem_every", "2")
EVAL_OUTPUT_DIGESTS = Path(__file__).parent / "fixtures" / "eval_output_digests.json"


def output_digests(folder: Path) -> dict[str, dict[str, str]]:
    """SHA-256 of every mask PNG (file bytes) and of every score file's arrays under `folder`.

    Score files are hashed by content (dtype, shape, float16 `prob` bytes, int64 `labels` bytes): an `.npz` is a zip
    whose members carry the time they were written, so its bytes differ between identical runs.
    """
    masks, scores = {}, {}
    for path in sorted(folder.rglob("*.png")):
        masks[path.relative_to(folder).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    for path in sorted(folder.rglob("*.npz")):
        with np.load(path) as data:
            prob, labels = data["prob"], data["labels"].astype("<i8")
            digest = hashlib.sha256(prob.dtype.str.encode() + str(prob.shape).encode() + prob.tobytes()
                                    + labels.tobytes())
        scores[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return {"masks": masks, "scores": scores}


def test_eval_outputs_on_the_golden_video_are_byte_identical_to_the_recorded_run(tmp_path, recipe_checkpoint_path,
                                                                                   one_torch_thread):
    """eval.py on the 60-frame fixture video (small memory: consolidation and long-term pruning happen) writes the
    same mask PNGs, byte for byte, and the same score arrays as recorded (history: tests/fixtures/README.md).

    A refactor must keep every digest. A change that legitimately moves float rounding (e.g. a reordered sum in
    the memory code) flips near-tie pixels and float16 scores: then check the probabilities against the original
    (the golden-probability tests, 2e-3), count what moved, and re-record the digests, saying why in the README.
    """
    expected = json.loads(EVAL_OUTPUT_DIGESTS.read_text())
    fixtures = Path(__file__).parent / "fixtures"
    summary = _run(recipe_checkpoint_path, "--generic_path", fixtures / "inference_video", *GOLDEN_EVAL_ARGUMENTS,
                   "--output", tmp_path / "out")
    assert summary.processed == ["vid00"]
    written = output_digests(tmp_path / "out")
    assert len(expected["masks"]) == len(expected["scores"]) == 60
    assert written["masks"] == expected["masks"]
    assert written["scores"] == expected["scores"]


# ------------------------------------------------------------------------- scoring never takes the run down


def test_a_video_whose_ground_truth_cannot_be_scored_is_named_and_the_others_are_scored(tmp_path,
                                                                                       recipe_checkpoint_path):
    root = tmp_path / "g"
    write_generic(root, _videos(2, 4), ground_truth=True)
    for path in sorted((root / "GroundTruth/synth0001").iterdir()):  # its ground truth uses other ids
        mask, palette = read_index_mask(path)
        write_index_mask(path, np.where(mask > 0, mask + 10, 0).astype(np.uint8), palette)
    out = tmp_path / "out"
    summary = _run(recipe_checkpoint_path, "--dataset", "G", "--generic_path", root, "--size", -1, "--output", out)
    assert summary.processed == ["synth0000", "synth0001"] and not summary.failed
    assert list(summary.unscored) == ["synth0001"]
    first, _ = read_index_mask(root / "Annotations/synth0001/00000.png")
    smallest = min(set(np.unique(first).tolist()) - {0})
    assert summary.unscored["synth0001"] == (
        f"its input masks give object id {smallest}, which its ground truth {root / 'GroundTruth/synth0001'} never "
        "holds; the ground truth must use the input masks' object ids")
    assert summary.scores is not None and "J&F-Mean" in summary.report
    assert f"NOT SCORED synth0001: its input masks give object id {smallest}" in summary.report
    written = json.loads((out / "summary.json").read_text())
    assert list(written["unscored"]) == ["synth0001"] and written["scores"] == summary.scores
    assert RunSummary.read(out / "summary.json") == summary  # what eval.py returns is what its readers get
    rows = (out / "per_object_results.csv").read_text().splitlines()
    assert rows[1:] and all(row.startswith("synth0000_") for row in rows[1:])  # only the scorable video


# ------------------------------------------------------------------------------ reruns know their settings


def _settings_on_disk(out: Path) -> tuple[int, set]:
    """config.yaml's eval.size and the eval.size every finished video recorded."""
    configured = yaml.safe_load((out / "config.yaml").read_text())["eval"]["size"]
    recorded = {json.loads(path.read_text())["settings"]["eval.size"] for path in (out / ".progress").iterdir()}
    return configured, recorded


def test_a_rerun_with_other_settings_refuses_and_overwrite_redoes_everything(tmp_path, recipe_checkpoint_path):
    write_generic(tmp_path / "g", _videos(1, 2))
    arguments = ["--dataset", "G", "--generic_path", tmp_path / "g", "--output", tmp_path / "out"]
    out = tmp_path / "out"
    previous_umask = os.umask(0o022)
    try:
        first = _run(recipe_checkpoint_path, *arguments)  # the default size, 480
        assert first.processed == ["synth0000"] and _settings_on_disk(out) == (480, {480})
        for path in out.rglob("*"):  # results are meant to be read by others: 0644 files, 0755 folders
            assert path.stat().st_mode & 0o777 == (0o755 if path.is_dir() else 0o644), path
        masks = {path: path.read_bytes() for path in (out / "synth0000").iterdir()}
        with pytest.raises(ValueError) as refused:
            _run(recipe_checkpoint_path, *arguments, "--size", -1)
        assert str(refused.value) == (
            f"output folder {out} holds 1 finished video(s) (e.g. 'synth0000') made with other settings, changed: "
            "eval.size: 480 -> -1; rerun with those settings, pass --overwrite to redo every video, or choose "
            "another --output")
        assert _settings_on_disk(out) == (480, {480})
        assert {path: path.read_bytes() for path in (out / "synth0000").iterdir()} == masks
        same = _run(recipe_checkpoint_path, *arguments, "--size", 480)
        assert same.skipped_finished == ["synth0000"]  # the same settings, given explicitly: nothing to redo
        redone = _run(recipe_checkpoint_path, *arguments, "--size", -1, "--overwrite")
        assert redone.processed == ["synth0000"] and _settings_on_disk(out) == (-1, {-1})
        for path in out.rglob("*"):
            assert path.stat().st_mode & 0o777 == (0o755 if path.is_dir() else 0o644), path
    finally:
        os.umask(previous_umask)


def test_output_settings_cover_the_model_file_and_the_inference_section(tmp_path):
    model = tmp_path / "m.pth"
    model.write_bytes(b"weights")
    config = eval_cli.resolve_config(["--dataset", "G", "--generic_path", str(tmp_path)])
    settings = output_settings(config, model_sha256=file_sha256(model), use_amp=False, size=480)
    assert settings["model.sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert settings["eval.generic_path"] == str(tmp_path.resolve())
    changed = eval_cli.resolve_config(["--dataset", "G", "--generic_path", str(tmp_path), "inference.top_k=5",
                                       "--flip"])
    changes = changed_settings(settings, output_settings(changed, model_sha256=file_sha256(model), use_amp=True,
                                                         size=480))
    assert changes == ["amp: False -> True", "eval.flip: False -> True", "inference.top_k: 30 -> 5"]


# --------------------------------------------------------------------------------- limits said up front


def test_too_many_objects_and_ids_above_255_are_refused_before_the_video_runs(tmp_path, recipe_checkpoint_path,
                                                                              monkeypatch, caplog):
    root = tmp_path / "g"
    write_generic(root, _videos(1, 2))
    for name, ids in (("many", (1, 2, 3)), ("wide", (1, 300))):
        mask = np.zeros((HEIGHT, WIDTH), np.uint16)
        for index, object_id in enumerate(ids):
            mask[8 * index:8 * index + 6, :10] = object_id
        for frame in range(2):
            write_image(root / f"JPEGImages/{name}/{frame:05d}.jpg", np.zeros((HEIGHT, WIDTH, 3), np.uint8))
        if name == "many":
            write_index_mask(root / "Annotations/many/00000.png", mask.astype(np.uint8))
        else:
            (root / "Annotations/wide").mkdir(parents=True)
            Image.fromarray(mask).save(root / "Annotations/wide/00000.png")
    monkeypatch.setattr(video_runner, "LARGE_MEMORY_BYTES", 0)  # every video counts as large here
    caplog.set_level(logging.WARNING)
    summary = eval_cli.main(["--model", str(recipe_checkpoint_path), "--dataset", "G", "--generic_path", str(root),
                             "--size", "-1", "--output", str(tmp_path / "out"), "eval.device=cpu",
                             "eval.max_objects=2"])
    assert summary.processed == ["synth0000"] and sorted(summary.failed) == ["many", "wide"]
    assert summary.failed["many"] == (
        "video 'many' has 3 objects (ids 1..3), more than eval.max_objects=2; time and memory grow with each "
        "object, so check that its masks hold objects (not a class or instance map), or pass eval.max_objects=3 "
        "to run it anyway")
    assert summary.failed["wide"] == (
        f"mask {root / 'Annotations/wide/00000.png'} holds object id 300 (a 16-bit mask); result masks are 8-bit "
        "PNGs of ids 0..255: renumber the video's objects to 1..255 before evaluating it")
    assert not (tmp_path / "out/many").exists() and not (tmp_path / "out/wide").exists()
    assert "video synth0000: its memory may take about" in caplog.text
    assert "lower eval.size, inference.max_working_frames or inference.max_long_term_elements" in caplog.text


def test_memory_estimate_counts_working_and_long_term_memory_and_one_read():
    config = eval_cli.resolve_config([])
    pixels = 30 * 54  # 480×854 at stride 16, padded
    elements = 10 * pixels + 10000  # T_max frames + LT_max
    expected = 4 * (elements * (64 + 1 + 2 * 512) + elements * pixels + 2 * 64 * pixels)
    assert video_runner.estimate_memory_bytes(480, 854, 2, 100, config) == expected
    unbounded = eval_cli.resolve_config(["--disable_long_term"])
    assert video_runner.estimate_memory_bytes(480, 854, 2, 1000, unbounded) > expected


def test_usage_counting_is_decided_from_the_whole_video_length(tmp_path, monkeypatch):
    """As the original (its eval.py decides from len(loader), every frame of the video): the frames before the
    first mask count too. Mutation checked: run_video passing len(video) (frames from the first mask) fails."""
    root = tmp_path / "g"
    for index in range(5):
        write_image(root / "JPEGImages/clip" / f"{index:05d}.jpg", np.zeros((16, 16, 3), np.uint8))
    first_mask = np.zeros((16, 16), np.uint8)
    first_mask[4:8, 4:8] = 1
    write_index_mask(root / "Annotations/clip/00002.png", first_mask, DAVIS_PALETTE)
    config = eval_cli.resolve_config(["--dataset", "G", "--generic_path", str(root)])
    video = eval_cli.open_benchmark(config.eval).video("clip")
    assert (len(video), video.full_length) == (3, 5)

    class CoreBuilt(Exception):
        pass

    def core_spy(network, inference_config, *, num_frames, **options):
        raise CoreBuilt(num_frames)

    monkeypatch.setattr(video_runner, "InferenceCore", core_spy)
    with pytest.raises(CoreBuilt) as built:
        video_runner.run_video(None, video, config, None, torch.device("cpu"), size=-1)
    assert built.value.args == (5,)


# ------------------------------------------------------------------------------------- the error contract


def _cli(capsys, *arguments) -> tuple[int, str]:
    """Run eval.py's command line in-process under `run_cli`; return (exit status, stderr)."""
    status = run_cli(eval_cli._main_status, [str(argument) for argument in arguments])
    return status, capsys.readouterr().err


def _generic_root(tmp_path: Path) -> Path:
    (tmp_path / "g/JPEGImages").mkdir(parents=True)
    (tmp_path / "g/Annotations").mkdir()
    return tmp_path / "g"


def _assert_one_line_error(status: int, stderr: str, expected: str) -> None:
    assert status == 1
    assert stderr.strip().splitlines() == [f"error: {expected}"] and "Traceback" not in stderr


@pytest.mark.parametrize("case", ["missing", "truncated", "foreign"])
def test_bad_checkpoints_stop_the_run_with_one_line_and_write_nothing(tmp_path, capsys, recipe_checkpoint_path,
                                                                      case):
    model = tmp_path / "model.pth"
    if case == "truncated":
        model.write_bytes(recipe_checkpoint_path.read_bytes()[:100_000])
    elif case == "foreign":
        torch.save({"fc.weight": torch.zeros(2, 2)}, model)
    status, stderr = _cli(capsys, "--model", model, "--dataset", "G", "--generic_path", _generic_root(tmp_path),
                          "--output", tmp_path / "out", "eval.device=cpu")
    expected = {
        "missing": f"checkpoint file not found: '{model}'; check the path (released XMem weights: "
                   "scripts/data/download_models.py)",
        "truncated": f"cannot read checkpoint '{model}': truncated, corrupt or not a weights-only PyTorch file",
        "foreign": f"checkpoint '{model}' is not an XMem state_dict: missing keys 412 (key_encoder.conv1.weight, "
                   "key_encoder.bn1.weight, key_encoder.bn1.bias, ...), unexpected keys 1 (fc.weight); pass a "
                   "released XMem .pth or a checkpoint saved by this project",
    }[case]
    if case == "truncated":  # the reason in parentheses is torch's own words
        assert status == 1 and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
        assert stderr.startswith(f"error: {expected} (") and stderr.strip().endswith("); download it again")
    else:
        _assert_one_line_error(status, stderr, expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("arguments, expected", [
    (["inference.topk=3"], "unknown config key 'inference.topk'; did you mean inference.top_k?"),
    (["eval.size=big"], "config key 'eval.size': expected int, got str 'big'"),
    (["--config", "eval/nope"], "config preset 'eval/nope' not found (looked at "),
])
def test_bad_settings_stop_the_run_with_one_line(tmp_path, capsys, arguments, expected):
    status, stderr = _cli(capsys, "--dataset", "G", "--generic_path", _generic_root(tmp_path), "--output",
                          tmp_path / "out", *arguments)
    if expected.endswith("(looked at "):  # the places looked at depend on the checkout
        assert status == 1 and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
        assert stderr.startswith(f"error: {expected}")
    else:
        _assert_one_line_error(status, stderr, expected)
    assert not (tmp_path / "out").exists()


def test_an_unusable_output_folder_or_dataset_root_stops_the_run_before_any_work(tmp_path, capsys, monkeypatch):
    root = _generic_root(tmp_path)
    common = ["--model", "unused.pth", "--dataset", "G", "eval.device=cpu"]
    (tmp_path / "file").write_text("not a folder")
    status, stderr = _cli(capsys, *common, "--generic_path", root, "--output", tmp_path / "file")
    _assert_one_line_error(status, stderr, f"output folder {tmp_path / 'file'} is a file; pass --output naming a "
                                           "folder")
    status, stderr = _cli(capsys, *common, "--generic_path", root, "--output", tmp_path / "file/out")
    _assert_one_line_error(status, stderr, f"output folder {tmp_path / 'file/out'} cannot be made: "
                                           f"{tmp_path / 'file'} is a file; pass --output naming a folder")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    # root may write anywhere: judge writability by the mode bits, as for any other user
    monkeypatch.setattr(writers.os, "access", lambda path, mode: not (mode & os.W_OK) or
                        bool(os.stat(path).st_mode & 0o200))
    status, stderr = _cli(capsys, *common, "--generic_path", root, "--output", locked / "out")
    _assert_one_line_error(status, stderr, f"output folder {locked} is not writable; pass --output naming a folder "
                                           "you can write to, or change its permissions")
    status, stderr = _cli(capsys, *common, "--generic_path", tmp_path / "absent", "--output", tmp_path / "out")
    _assert_one_line_error(status, stderr, f"generic root (generic_path) not found: {tmp_path / 'absent'} (check "
                                           "the dataset path setting)")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file", "g", "locked"]
    assert list(locked.iterdir()) == []
    with pytest.raises(FileNotFoundError):  # --debug: the traceback is shown
        run_cli(eval_cli._main_status, [*common, "--generic_path", str(tmp_path / "absent"), "--debug"])


def test_eval_py_as_a_process_prints_one_error_line_and_exits_1(tmp_path):
    repository = Path(eval_cli.__file__).resolve().parent
    environment = {**os.environ, "PYTHONPATH": str(repository), "OMP_NUM_THREADS": "1"}
    process = subprocess.run([sys.executable, str(repository / "eval.py"), "--dataset", "G", "--generic_path",
                              str(tmp_path / "absent"), "--output", str(tmp_path / "out")],
                             capture_output=True, text=True, env=environment, timeout=300)
    assert process.returncode == 1
    assert process.stderr.strip().splitlines() == [
        f"error: generic root (generic_path) not found: {tmp_path / 'absent'} (check the dataset path setting)"]
    assert not (tmp_path / "out").exists()
