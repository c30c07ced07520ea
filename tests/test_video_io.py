"""dataset/video_io.py: the one reader of a user's video and masks, shared by `propagate` and eval.py."""
import numpy as np
import pytest
from PIL import Image

from configs.common import DAVIS_PALETTE
from configs.schema import InferenceConfig
from dataset.image_io import write_image, write_index_mask
from dataset.video_io import frames_from, read_mask
from inference import propagate
from model.network import XMem

HEIGHT, WIDTH = 64, 112


def _mask() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[10:30, 20:50] = 1
    mask[35:60, 60:100] = 2
    return mask


def _frames(folder, count=3):
    for index in range(count):
        write_image(folder / f"{index:05d}.jpg", np.full((HEIGHT, WIDTH, 3), 30 * index, np.uint8))
    return folder


@pytest.fixture(scope="module")
def network():
    return XMem().eval()


def test_a_mask_a_pixel_off_is_resized_with_a_warning_naming_it_by_propagate_as_by_eval(tmp_path, network):
    folder = _frames(tmp_path / "frames")
    path = tmp_path / "first.png"
    write_index_mask(path, np.pad(_mask(), ((0, 1), (0, 0))))  # 65×112 for 64×112 frames
    with pytest.warns(UserWarning, match=f"mask {path} is 112x65, its frame 112x64: resized"):
        results = list(propagate(network, folder, path, InferenceConfig()))
    assert [mask.shape for _, _, mask in results] == [(HEIGHT, WIDTH)] * 3
    assert set(np.unique(results[0][2].numpy())) == {0, 1, 2}


def test_a_davis_coloured_rgb_mask_is_read_as_ids(tmp_path, network):
    palette = np.frombuffer(DAVIS_PALETTE, np.uint8).reshape(-1, 3)
    Image.fromarray(palette[_mask()]).save(tmp_path / "rgb.png")
    assert np.array_equal(read_mask(tmp_path / "rgb.png"), _mask())
    results = list(propagate(network, _frames(tmp_path / "frames"), tmp_path / "rgb.png", InferenceConfig()))
    assert results[0][0] == 0 and set(np.unique(results[0][2].numpy())) == {0, 1, 2}


def test_a_sixteen_bit_mask_keeps_ids_above_255_for_the_api(tmp_path):
    ids = _mask().astype(np.uint16) * 500
    Image.fromarray(ids).save(tmp_path / "wide.png")
    assert set(np.unique(read_mask(tmp_path / "wide.png"))) == {0, 500, 1000}


def test_a_truncated_frame_fails_with_its_file_name(tmp_path):
    folder = _frames(tmp_path / "frames")
    broken = folder / "00001.jpg"
    broken.write_bytes(broken.read_bytes()[:200])
    frames, count = frames_from(folder)
    assert count == 3
    next(frames)
    with pytest.raises(ValueError, match=f"cannot read image {broken}"):
        next(frames)


def test_a_mask_far_off_its_frame_names_both_sizes(tmp_path):
    write_index_mask(tmp_path / "big.png", np.zeros((HEIGHT * 2, WIDTH), np.uint8))
    with pytest.raises(ValueError, match="big.png is 112x128 but its frame is 112x64"):
        read_mask(tmp_path / "big.png", frame_shape=(HEIGHT, WIDTH))
