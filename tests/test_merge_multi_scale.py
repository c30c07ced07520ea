"""merge_multi_scale.py: averaging saved scores per object id, layouts, palettes and bad input."""
import zipfile

import numpy as np
import pytest

from configs.common import DAVIS_PALETTE
from dataset.image_io import read_index_mask
from dataset.writers import ResultWriter
from scripts.evaluation import merge_multi_scale

HEIGHT, WIDTH = 6, 8
CUSTOM_PALETTE = bytes(range(256)) * 3


def _prob(rows):
    """(N+1)×H×W probabilities: each row constant `value`."""
    return np.stack([np.full((HEIGHT, WIDTH), value, np.float32) for value in rows])


def test_scores_are_averaged_per_object_id_across_runs(tmp_path):
    first, second = ResultWriter(tmp_path / "a", "davis"), ResultWriter(tmp_path / "b", "davis")
    # Run a is sure of object 3 on the left half, run b knows objects 3 and 7 and prefers 7 everywhere.
    left = _prob([0.2, 0.8])
    left[:, :, WIDTH // 2:] = np.array([0.9, 0.1])[:, None, None]
    first.write_scores("v", "00000", left, [3])
    first.write_mask("v", "00000", np.zeros((HEIGHT, WIDTH), np.uint8), CUSTOM_PALETTE)
    second.write_scores("v", "00000", _prob([0.1, 0.35, 0.55]), [3, 7])
    assert merge_multi_scale.main(["--list", str(tmp_path / "a"), str(tmp_path / "b"),
                                   "--output", str(tmp_path / "merged")]) is None
    mask, palette = read_index_mask(tmp_path / "merged/v/00000.png")
    # left: bg 0.3, 3 -> 1.15, 7 -> 0.55; right: bg 1.0, 3 -> 0.45, 7 -> 0.55
    assert (mask[:, :WIDTH // 2] == 3).all() and (mask[:, WIDTH // 2:] == 0).all()
    assert palette == CUSTOM_PALETTE  # taken from the first run's own mask


def test_youtube_layout_is_kept_and_zipped(tmp_path):
    run = ResultWriter(tmp_path / "y", "youtube")
    run.write_scores("fish", "00005", _prob([0.1, 0.9]), [2])
    zip_path = merge_multi_scale.main(["--pattern", str(tmp_path / "y*"), "--output", str(tmp_path / "ym")])
    mask, palette = read_index_mask(tmp_path / "ym/Annotations/fish/00005.png")
    assert (mask == 2).all() and palette == DAVIS_PALETTE
    assert zipfile.ZipFile(zip_path).namelist() == ["Annotations/fish/00005.png"]


def test_runs_without_scores_and_mismatched_sizes_are_rejected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no Scores/ folder with videos in .*empty; run eval.py with "
                                                "--save_scores"):
        merge_multi_scale.merge_runs([tmp_path / "empty"], tmp_path / "out")
    ResultWriter(tmp_path / "a", "davis").write_scores("v", "0", _prob([0.5, 0.5]), [1])
    ResultWriter(tmp_path / "b", "davis").write_scores("v", "0", np.zeros((2, 3, 3), np.float32), [1])
    with pytest.raises(ValueError, match=r"b/Scores/v/0.npz is 3x3 but .*a/Scores/v/0.npz is 8x6"):
        merge_multi_scale.merge_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
