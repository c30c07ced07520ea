"""scripts/speed/speed_compare.py on tiny frames: the reference comparison (stage times and agreement) and `--profile`
(the optimised path alone), both on a memory the manager filled to its bound."""
from __future__ import annotations

import re

import pytest

from inference.memory_manager import MemoryManager
from scripts.speed import speed_compare

TINY = ["--height", "64", "--width", "112", "--objects", "2", "--repeats", "1", "--working-frames", "4",
        "--min-working-frames", "2", "--long-term-elements", "40", "--prototypes", "8", "--weights", "random"]
# 4×7 = 28 elements per frame: T_max − 1 = 3 working frames; long-term memory pruned to LT_max − P, then P more.
MEMORY_LINE = "2 object(s), 64×112, memory 84 working + 40 long-term elements, top-k 30, device cpu"
# max |optimised − reference| ≤ 1e-4 of the output's scale (values reach ~60 with random weights; the readout is a
# weighted average of N(0, 1) random values, up to ~5, read with the l2 expansion's float rounding).
AGREEMENT_TOLERANCE = 1e-4
VALUE_SCALE, READOUT_SCALE = 100, 5


def test_compare_times_both_paths_on_the_filled_memory_and_they_agree(capsys, one_torch_thread):
    speed_compare.main(TINY)
    output = capsys.readouterr().out
    assert MEMORY_LINE in output
    for stage in (*speed_compare.STAGES, "total"):
        assert re.search(rf"^{stage} +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+$", output, re.MULTILINE), stage
    differences = dict(re.findall(r"max \|Δ\| (\w+) +([\d.e+-]+) +\(max", output))
    assert set(differences) == {"prob", "hidden_after_segment", "value", "hidden_after_value"}
    assert all(float(value) <= AGREEMENT_TOLERANCE * VALUE_SCALE for value in differences.values())
    readout = re.search(r"max \|Δ\| readout ([\d.e+-]+) over pixels with the same top-k set", output)
    assert readout and float(readout.group(1)) <= AGREEMENT_TOLERANCE * READOUT_SCALE


def test_profile_times_the_optimised_path_alone(capsys, one_torch_thread, monkeypatch):
    """Mutation checked: timing a read of the tool's own (not `MemoryManager.read`) fails the read count."""
    reads = []
    manager_read = MemoryManager.read
    monkeypatch.setattr(MemoryManager, "read", lambda self, *args: reads.append(1) or manager_read(self, *args))
    speed_compare.main([*TINY, "--profile", "--device", "cpu"])
    assert len(reads) == 2  # the warm-up frame and one timed frame read the manager's memory
    output = capsys.readouterr().out
    assert MEMORY_LINE in output and "max |Δ|" not in output and "reference" not in output
    assert [line.split()[0] for line in output.splitlines()[-5:]] == [*speed_compare.STAGES, "total"]


def test_bad_flags_are_refused_in_one_line(capsys):
    with pytest.raises(SystemExit):
        speed_compare.main([*TINY, "--device", "cuda"])
    assert "add --profile to time the optimised path on another device" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        speed_compare.main([*TINY, "--prototypes", "50"])
    assert "need 1 ≤ num_prototypes ≤ max_long_term_elements, got 50 and 40" in capsys.readouterr().err
