"""Ablation switches, the configs/ablations rows and scripts/study/run_ablations.py.

Each switch is checked for the behaviour a user would notice (memory contents, sensory state, deep-update calls),
each memory-reading variant against its formula on random tensors, and run_ablations.py end to end on a tiny
synthetic DAVIS set with the recipe checkpoint.
"""
import csv
import dataclasses
import math
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch
import yaml

import train
from configs import ablation_rows
from configs.common import OUTPUT_CAPTURED, ChildRun
from configs.loader import load_config
from configs.schema import Config, InferenceConfig, ModelConfig
from configs.sidecar import apply_checkpoint_switches
from dataset.synthetic import PRESETS, SyntheticVideo, make_videos
from dataset.synthetic_layouts import write_davis
from dataset.training_data import DataPhase, StageData
from inference.evaluation.ablation_entries import ENTRIES_FILE, read_entries
from inference.evaluation.comparison_page import video_jf_from_table
from inference.inference_core import InferenceCore, normalize_image
from inference.memory_manager import MemoryManager
from model.checkpoint import build_network_from_state_dict
from model.training.run_folder import RunDirectory
from scripts.study import run_ablations
from tests.test_report_page import _check_links

ABLATION_DIR = Path(__file__).resolve().parents[1] / "configs" / "ablations"
HEIGHT, WIDTH = 64, 112
ELEMENTS_PER_FRAME = (HEIGHT // 16) * (WIDTH // 16)
NUM_FRAMES = 8
# Small memory budgets so that an 8-frame video consolidates (T_max = 3 frames, P = 8, LT_max = 40).
SMALL_MEMORY = dict(mem_every=1, max_working_frames=3, min_working_frames=2, num_prototypes=8,
                    max_long_term_elements=40)
SMALL_MEMORY_OVERRIDES = [f"inference.{key}={value}" for key, value in SMALL_MEMORY.items()]
NO_SENSORY_PREFIXES = ("decoder.hidden_update.", "value_encoder.hidden_reinforce.")
DECODER_FUSER_INPUTS_WITHOUT_HIDDEN = 1024 + 512  # [f16 | readout]; the hidden channels come last
RETRAINING_SWITCHES = ("similarity", "use_shrinkage", "use_selection", "hidden_dim")


def _row_config(name: str, **inference) -> Config:
    config = load_config(ABLATION_DIR / f"{name}.yaml")
    return dataclasses.replace(config, inference=dataclasses.replace(config.inference, **inference))


def _video(num_frames: int = NUM_FRAMES, seed: int = 0) -> SyntheticVideo:
    return SyntheticVideo(seed=seed, height=HEIGHT, width=WIDTH, num_frames=num_frames, difficulty=PRESETS["easy"])


def _run_core(network, config: InferenceConfig, *, model_config: ModelConfig | None = None,
              video: SyntheticVideo | None = None) -> tuple[InferenceCore, list[int]]:
    """Stream a synthetic video (mask on frame 0); return the core and the working-memory size after each frame."""
    video = video or _video()
    core = InferenceCore(network, config, model_config=model_config, num_frames=video.num_frames)
    working = []
    for index, rgb, mask in video.frames():
        core.step(normalize_image(rgb), mask.astype(np.int64) if index == 0 else None,
                  end=index == video.num_frames - 1)
        working.append(core.working_memory_elements)
    return core, working


# ----------------------------------------------------------------------------------------------- the row files
def test_every_row_file_loads_with_a_title_and_names_a_checkpoint_when_it_needs_retraining():
    defaults = Config()
    rows = ablation_rows.select_rows(None, ABLATION_DIR)
    assert len(rows) == len(list(ABLATION_DIR.glob("*.yaml")))
    assert {row.group for row in rows} == set(ablation_rows.GROUP_ORDER)
    for row in rows:
        config = load_config(row.path)
        assert row.label and row.label != row.name, row.name
        retrained = any(getattr(config.model, switch) != getattr(defaults.model, switch)
                        for switch in RETRAINING_SWITCHES)
        assert (row.checkpoint is not None) == retrained, row.name
        if retrained:  # the same file trains that checkpoint
            assert config.train.exp_id != defaults.train.exp_id, row.name
        if "(XMem)" in row.label:
            assert row.overrides == () and row.checkpoint is None, row.name
        else:
            assert row.overrides or row.checkpoint, f"{row.name} changes nothing"
    # Groups in the paper's order.
    order = [ablation_rows.GROUP_ORDER.index(row.group) for row in rows]
    assert order == sorted(order)


def test_row_selection_by_pattern_and_errors(tmp_path):
    names = [row.name for row in ablation_rows.select_rows(["long_term_*", "stores_all"], ABLATION_DIR)]
    assert names == ["long_term_full", "long_term_no_potentiation", "long_term_off", "long_term_random_prototypes",
                     "stores_all"]
    with pytest.raises(ValueError, match=r"--rows 'nope\*' matches no ablation config in .*; rows: deep_update_"):
        ablation_rows.select_rows(["nope*"], ABLATION_DIR)
    with pytest.raises(FileNotFoundError, match="no ablation configs"):
        ablation_rows.select_rows(None, tmp_path)


# ----------------------------------------------------------------------------------------------- reading formulas
KEY_DIM, VALUE_DIM, FEATURE_SIZE, MEMORY_FRAMES = 64, 16, (4, 5), 3


def _expected_similarity(row: str, key, shrinkage, query, selection) -> torch.Tensor:
    """N×M similarity of each reading row from its formula (up to a per-query constant, which the softmax and
    top-k ignore). key N×C^k, shrinkage N, query C^k×M, selection C^k×M."""
    difference = key[:, :, None] - query[None]  # N×C^k×M
    scale = math.sqrt(KEY_DIM)
    if row == "reading_dot":  # STM: k_i·q_j / sqrt(C^k)
        return key @ query / scale
    if row == "reading_l2":  # STCN: -||k_i - q_j||² / sqrt(C^k)
        return -difference.pow(2).sum(1) / scale
    if row == "reading_l2_shrinkage":  # s_i (2 k_i·q_j - ||k_i||²) / sqrt(C^k): the original drops ||q_j||² here
        return shrinkage[:, None] * (2 * key @ query - key.pow(2).sum(1, keepdim=True)) / scale
    if row == "reading_l2_selection":  # -Σ_c e_cj (k_ci - q_cj)² / sqrt(C^k)
        return -(selection[None] * difference.pow(2)).sum(1) / scale
    # XMem: -s_i Σ_c e_cj (k_ci - q_cj)² / sqrt(C^k)
    return -shrinkage[:, None] * (selection[None] * difference.pow(2)).sum(1) / scale


@pytest.mark.parametrize("row", ["reading_dot", "reading_l2", "reading_l2_shrinkage", "reading_l2_selection",
                                 "reading_l2_shrinkage_selection", "reading_no_top_k"])
def test_each_reading_row_reads_memory_by_its_formula(row):
    """The memory manager, configured by the row file, reads what the row's formula says: top-k (or full)
    softmax over the similarity, then the weighted sum of the values."""
    config = _row_config(row, enable_long_term=False)
    manager = MemoryManager(config.inference, model_config=config.model, hidden_dim=0,
                            count_long_term_usage=False)
    manager.add_objects(1)
    manager.initialize(FEATURE_SIZE, key_dim=KEY_DIM, value_dim=VALUE_DIM, device=torch.device("cpu"),
                       dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    keys, shrinkages, values = [], [], []
    for _ in range(MEMORY_FRAMES):
        key = torch.randn(1, KEY_DIM, *FEATURE_SIZE, generator=generator, dtype=torch.float64)
        shrinkage = 1 + torch.rand(1, 1, *FEATURE_SIZE, generator=generator, dtype=torch.float64) ** 2
        value = torch.randn(1, 1, VALUE_DIM, *FEATURE_SIZE, generator=generator, dtype=torch.float64)
        manager.add_memory(key, shrinkage, None, value)
        keys.append(key.flatten(2)[0].t())
        shrinkages.append(shrinkage.flatten())
        values.append(value.flatten(3)[0, 0].t())
    query = torch.randn(1, KEY_DIM, *FEATURE_SIZE, generator=generator, dtype=torch.float64)
    selection = torch.rand(1, KEY_DIM, *FEATURE_SIZE, generator=generator, dtype=torch.float64)

    read = manager.read(query, selection)[0, 0].flatten(1)  # C^v×M
    similarity = _expected_similarity(row, torch.cat(keys), torch.cat(shrinkages), query.flatten(2)[0],
                                      selection.flatten(2)[0])
    top_k = config.inference.top_k
    if top_k is not None:  # keep each query's k largest
        threshold = similarity.topk(top_k, dim=0).values[-1:]
        similarity = similarity.masked_fill(similarity < threshold, -math.inf)
    expected = torch.cat(values).t() @ torch.softmax(similarity, dim=0)
    torch.testing.assert_close(read, expected, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------------------------- long-term switches
def _consolidated(row: str, seed: int = 0) -> tuple[MemoryManager, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A manager (row's settings, small budgets) after one consolidation with reads in between (usage).

    Returns the manager and the candidates' keys, values and normalised usage just before consolidating.
    """
    config = _row_config(row, **SMALL_MEMORY)
    manager = MemoryManager(config.inference, model_config=config.model, hidden_dim=0, count_long_term_usage=True)
    manager.add_objects(1)
    manager.initialize(FEATURE_SIZE, key_dim=KEY_DIM, value_dim=VALUE_DIM, device=torch.device("cpu"),
                       dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    elements = FEATURE_SIZE[0] * FEATURE_SIZE[1]
    candidates = None
    for frame in range(config.inference.max_working_frames):
        if frame == config.inference.max_working_frames - 1:  # this add consolidates frame 1 (the only candidate)
            working = manager.working
            candidates = (working.keys[elements:2 * elements].clone(), working.values[elements:2 * elements].clone(),
                          working.normalized_usage()[elements:2 * elements].clone())
        manager.add_memory(torch.randn(1, KEY_DIM, *FEATURE_SIZE, generator=generator),
                           1 + torch.rand(1, 1, *FEATURE_SIZE, generator=generator),
                           torch.rand(1, KEY_DIM, *FEATURE_SIZE, generator=generator),
                           torch.randn(1, 1, VALUE_DIM, *FEATURE_SIZE, generator=generator))
        manager.read(torch.randn(1, KEY_DIM, *FEATURE_SIZE, generator=generator),
                     torch.rand(1, KEY_DIM, *FEATURE_SIZE, generator=generator))
    assert manager.long_term_elements == SMALL_MEMORY["num_prototypes"]
    return (manager, *candidates)


def _candidate_rows(prototype_keys: torch.Tensor, candidate_keys: torch.Tensor) -> list[int]:
    """Which candidate each prototype key is (every prototype key is one of the candidates' keys)."""
    matches = (prototype_keys[:, None] == candidate_keys[None]).all(dim=2)
    assert torch.all(matches.sum(dim=1) == 1)
    return matches.float().argmax(dim=1).tolist()


def test_usage_prototypes_are_the_most_used_and_random_ones_differ():
    usage_manager, keys, _, usage = _consolidated("long_term_full")
    chosen = _candidate_rows(usage_manager.long_term.live_keys(), keys)
    assert sorted(chosen) == sorted(usage.topk(SMALL_MEMORY["num_prototypes"]).indices.tolist())
    random_manager, random_keys, _, _ = _consolidated("long_term_random_prototypes")
    torch.testing.assert_close(random_keys, keys, rtol=0, atol=0)  # same memory, only the selection differs
    assert sorted(_candidate_rows(random_manager.long_term.live_keys(), keys)) != sorted(chosen)


def test_no_potentiation_keeps_the_prototypes_own_values():
    plain, keys, values, _ = _consolidated("long_term_no_potentiation")
    chosen = _candidate_rows(plain.long_term.live_keys(), keys)
    torch.testing.assert_close(plain.long_term.live_values(), values[chosen], rtol=0, atol=0)
    potentiated, keys, values, _ = _consolidated("long_term_full")
    chosen = _candidate_rows(potentiated.long_term.live_keys(), keys)
    # Potentiation averages over the candidates a prototype attends to: not the prototype's own value.
    assert not torch.allclose(potentiated.long_term.live_values(), values[chosen])


# ----------------------------------------------------------------------------------------------- core switches
def test_sensory_only_writes_memory_on_annotated_frames_only(recipe_network):
    config = _row_config("stores_sensory_only")
    core, working = _run_core(recipe_network, config.inference)
    assert working == [ELEMENTS_PER_FRAME] * NUM_FRAMES
    assert core.long_term_memory_elements == 0
    assert float(core.memory.sensory.abs().max()) > 0  # the sensory memory carries the video


def _deep_update_calls(network, config: InferenceConfig, monkeypatch) -> list[bool]:
    """is_deep_update of every encode_value call over the test video."""
    calls = []
    original = network.encode_value

    def spy(*args, **kwargs):
        calls.append(kwargs["is_deep_update"])
        return original(*args, **kwargs)

    monkeypatch.setattr(network, "encode_value", spy)
    _run_core(network, config)
    monkeypatch.undo()
    return calls


def test_deep_update_rows_change_when_the_sensory_memory_is_deep_updated(recipe_network, monkeypatch):
    memory_every_3 = dict(mem_every=3)  # memory frames 0, 3, 6 (the last frame, 7, is never one)
    every_memory_frame = _deep_update_calls(
        recipe_network, _row_config("deep_update_memory_frames", **memory_every_3).inference, monkeypatch)
    assert every_memory_frame == [True, True, True]
    never = _deep_update_calls(recipe_network, _row_config("deep_update_never", **memory_every_3).inference,
                               monkeypatch)
    assert never == [True, False, False]  # frame 0 initialises the sensory memory, then never again
    every_frame = _deep_update_calls(recipe_network, _row_config("deep_update_every_frame", **memory_every_3).inference,
                                     monkeypatch)
    assert every_frame == [True] * (NUM_FRAMES - 1)  # an extra value-encoder pass on each non-memory frame
    deferred = _deep_update_calls(recipe_network, _row_config("deep_update_every_10_frames", mem_every=3,
                                                              deep_update_every=4).inference, monkeypatch)
    assert deferred == [True, False, True]  # due at frame 4, deferred to the memory frame 6


def test_no_sensory_model_runs_and_eval_rejects_a_sensory_checkpoint_for_it(recipe_state_dict, tmp_path):
    weights = {key: tensor for key, tensor in recipe_state_dict.items() if not key.startswith(NO_SENSORY_PREFIXES)}
    for key in ("decoder.fuser.block1.conv1.weight", "decoder.fuser.block1.downsample.weight"):
        weights[key] = weights[key][:, :DECODER_FUSER_INPUTS_WITHOUT_HIDDEN]
    network = build_network_from_state_dict(weights)
    assert network.hidden_dim == 0
    config = _row_config("stores_working_long_term", **SMALL_MEMORY)
    assert config.model.hidden_dim == 0
    core, _ = _run_core(network, config.inference, model_config=config.model)
    assert core.memory.sensory is None and core.long_term_memory_elements > 0

    checkpoint = tmp_path / "xmem.pth"
    assert apply_checkpoint_switches(config, checkpoint, hidden_dim=0) is config
    with pytest.raises(ValueError, match=r"config model.hidden_dim=0 but checkpoint '.*xmem.pth' has C\^h=64; "
                                         r"pass a checkpoint trained with that sensory size .* set "
                                         r"inference.use_sensory_memory=false"):
        apply_checkpoint_switches(config, checkpoint, hidden_dim=64)


def test_eval_applies_and_checks_a_checkpoint_sidecar(tmp_path):
    checkpoint = tmp_path / "ablation_reading_dot_s03_110000.pth"
    sidecar = checkpoint.with_suffix(".yaml")
    trained = {"key_dim": 64, "value_dim": 512, "hidden_dim": 64, "single_object": False, "similarity": "dot",
               "use_shrinkage": False, "use_selection": False}
    sidecar.write_text(yaml.safe_dump({"model": trained}))
    with pytest.warns(UserWarning, match=r"memory reading as the checkpoint was trained \(similarity='dot', "
                                         r"use_shrinkage=False, use_selection=False, from .*\.yaml\)"):
        applied = apply_checkpoint_switches(Config(), checkpoint, hidden_dim=64)
    assert (applied.model.similarity, applied.model.use_shrinkage, applied.model.use_selection) == ("dot", False,
                                                                                                    False)
    row = load_config(ABLATION_DIR / "reading_dot.yaml")
    assert apply_checkpoint_switches(row, checkpoint, hidden_dim=64) is row
    contradicting = load_config(ABLATION_DIR / "reading_l2_selection.yaml")
    with pytest.raises(ValueError, match=r"checkpoint sidecar '.*\.yaml': the checkpoint was trained with "
                                         r"similarity='dot', use_shrinkage=False, use_selection=False but the config "
                                         r"sets similarity='l2', use_shrinkage=False, use_selection=True; drop"):
        apply_checkpoint_switches(contradicting, checkpoint, hidden_dim=64)
    sidecar.write_text("model:\n  similarity: cosine\n")
    with pytest.raises(ValueError, match=r"checkpoint sidecar '.*\.yaml': not a valid model preset \(config key "
                                         r"'model.similarity': got 'cosine'"):
        apply_checkpoint_switches(Config(), checkpoint, hidden_dim=64)


# ----------------------------------------------------------------------------------------------- run_ablations.py
def _davis_set(root: Path) -> Path:
    write_davis(root / "trainval", {}, make_videos(1, seed=0, num_frames=NUM_FRAMES, height=HEIGHT, width=WIDTH,
                                                   difficulty=PRESETS["easy"]))
    return root


def _table(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {row["row"]: row for row in csv.DictReader(handle)}


THREE_ROWS = ["long_term_off", "long_term_random_prototypes", "stores_sensory_zeroed"]


def test_run_ablations_three_rows_change_behaviour_and_resume(tmp_path, recipe_checkpoint_path, recipe_network,
                                                              monkeypatch):
    davis = _davis_set(tmp_path / "DAVIS")
    output = tmp_path / "ablations"
    arguments = ["--model", str(recipe_checkpoint_path), "--rows", *THREE_ROWS, "--output", str(output),
                 "--dataset", "D17", "--d17_path", str(davis), "--size", "-1", "eval.device=cpu",
                 *SMALL_MEMORY_OVERRIDES]
    result = run_ablations.main(arguments)

    table = _table(output / "ablations.csv")
    assert list(table) == THREE_ROWS
    markdown = (output / "ablations.md").read_text()
    for name in THREE_ROWS:
        row = table[name]
        assert row["status"] == "done" and row["checkpoint"] == str(recipe_checkpoint_path)
        assert float(row["fps"]) > 0 and float(row["peak_memory_mb"]) > 0 and int(row["frames"]) == NUM_FRAMES
        assert 0 <= float(row["jf"]) <= 100
        assert f"| {name} |" in markdown
        resolved = yaml.safe_load((output / name / "config.yaml").read_text())
        assert resolved["inference"]["max_working_frames"] == SMALL_MEMORY["max_working_frames"]
    # Long-term off: nothing is consolidated and working memory keeps every memory frame (all but the last).
    assert int(table["long_term_off"]["long_term_elements"]) == 0
    assert int(table["long_term_off"]["working_elements"]) == (NUM_FRAMES - 1) * ELEMENTS_PER_FRAME
    assert int(table["long_term_random_prototypes"]["long_term_elements"]) > 0
    # Store peaks, in elements and bytes (float32: C^k key, shrinkage, the objects' C^v values, then an int64 frame
    # index and two float32 usage counters; selection too with long-term memory on).
    peak = int(table["long_term_off"]["working_elements_peak"])
    assert peak == (NUM_FRAMES - 1) * ELEMENTS_PER_FRAME and int(table["long_term_off"]["long_term_bytes_peak"]) == 0
    num_objects = len(_video().object_ids)
    assert int(table["long_term_off"]["working_bytes_peak"]) == peak * (4 * (64 + 1 + num_objects * 512) + 8 + 4 + 4)
    consolidating = table["long_term_random_prototypes"]
    assert int(consolidating["working_elements_peak"]) == (SMALL_MEMORY["max_working_frames"] - 1) * ELEMENTS_PER_FRAME
    assert 0 < int(consolidating["long_term_elements_peak"]) <= SMALL_MEMORY["max_long_term_elements"]
    assert f"{peak} / 0" in markdown
    # Sensory memory held at zero by the switch; it moves in the rows that keep it.
    assert float(table["stores_sensory_zeroed"]["sensory_peak_abs"]) == 0
    assert float(table["long_term_off"]["sensory_peak_abs"]) > 0
    assert result["entries"][0].row == "long_term_off"
    # The entries file, for tools that run this command as a process: read back, it is the returned entries
    # (mutation checked: writing all entries but the last fails here).
    assert result["json"] == output / ENTRIES_FILE and read_entries(output) == result["entries"]
    # The comparison page: the table, and per video each row's J&F (its per-object table's), linking to its page.
    assert result["page"] == output / "ablations.html"
    page = _check_links(result["page"])
    assert sorted(link for link in page.links if not link.startswith("#")) == sorted(
        f"{name}/report.html" for name in THREE_ROWS)
    for name in THREE_ROWS:
        per_video = video_jf_from_table(output / name / "per_object_results.csv")
        assert len(per_video) == 1
        for video, jf in per_video.items():
            cells = next(cells for _, row, cells in page.rows if row == video)
            assert float(cells[name]) == pytest.approx(jf, abs=1e-9)

    # Random prototypes: the run's own settings consolidate other prototypes than usage-based selection does.
    ran = load_config(output / "long_term_random_prototypes" / "config.yaml")
    assert ran.inference.prototype_selection == "random"
    random_core, _ = _run_core(recipe_network, ran.inference)
    usage_core, _ = _run_core(recipe_network, dataclasses.replace(ran.inference, prototype_selection="usage"))
    assert random_core.long_term_memory_elements == usage_core.long_term_memory_elements > 0
    random_keys = {tuple(key.tolist()) for key in random_core.memory.long_term.live_keys()}
    usage_keys = {tuple(key.tolist()) for key in usage_core.memory.long_term.live_keys()}
    assert random_keys != usage_keys

    # A rerun reuses every finished row without starting eval.py.
    def no_process(*args, **kwargs):
        raise AssertionError("a finished row was run again")

    monkeypatch.setattr(run_ablations, "run_child", no_process)
    again = _table(run_ablations.main(arguments)["csv"])
    assert [row["status"] for row in again.values()] == ["done (earlier run)"] * 3
    assert {name: row["jf"] for name, row in again.items()} == {name: row["jf"] for name, row in table.items()}
    monkeypatch.undo()

    # Rows side by side (--jobs 2): the same results, each row's eval.py output in its own log.
    side_by_side = tmp_path / "side_by_side"
    parallel = _table(run_ablations.main([str(side_by_side) if argument == str(output) else argument
                                          for argument in arguments] + ["--jobs", "2"])["csv"])
    compared = ("jf", "j", "f", "frames", "working_elements", "long_term_elements", "sensory_peak_abs")
    assert {name: [row[key] for key in compared] for name, row in parallel.items()} == {
        name: [row[key] for key in compared] for name, row in table.items()}
    for name in THREE_ROWS:
        assert "J&F" in (side_by_side / name / run_ablations.LOG_FILE).read_text()
        assert not (output / name / run_ablations.LOG_FILE).exists()  # one job: the output was shown live


def test_run_ablations_failed_skipped_and_duplicate_rows(tmp_path, recipe_checkpoint_path):
    rows = tmp_path / "rows"
    rows.mkdir()
    # A no-sensory row given the sensory recipe checkpoint: eval.py refuses it.
    (rows / "a_no_sensory.yaml").write_text(f"# Memory stores: no sensory\nmodel:\n  hidden_dim: 0\neval:\n"
                                            f"  model: {recipe_checkpoint_path}\n")
    (rows / "b_same.yaml").write_text(f"# Memory stores: same again\nmodel:\n  hidden_dim: 0\neval:\n"
                                      f"  model: {recipe_checkpoint_path}\n")
    (rows / "c_missing.yaml").write_text("# Memory reading: dot\nmodel:\n  similarity: dot\neval:\n"
                                         "  model: ./no/such/checkpoint.pth\n")
    davis = _davis_set(tmp_path / "DAVIS")
    arguments = ["--model", str(recipe_checkpoint_path), "--ablation_dir", str(rows), "--output",
                 str(tmp_path / "out"), "--dataset", "D17", "--d17_path", str(davis), "eval.device=cpu"]
    entries = {entry.row: entry for entry in run_ablations.main(arguments)["entries"]}
    assert entries["a_no_sensory"].status.startswith(
        "failed: eval.py exited with status 1: config model.hidden_dim=0 but checkpoint")
    assert entries["b_same"].same_as == "a_no_sensory" and entries["b_same"].status.startswith("failed")
    assert read_entries(tmp_path / "out") == list(entries.values())  # failed and skipped rows keep their status
    assert entries["c_missing"].status == (
        f"skipped: checkpoint ./no/such/checkpoint.pth not found; train it with python train.py --config "
        f"{rows / 'c_missing.yaml'} (or download a released one)")
    assert not (tmp_path / "out" / "c_missing").exists()
    assert list(_table(tmp_path / "out" / "ablations.csv")) == ["a_no_sensory", "b_same", "c_missing"]

    with pytest.raises(ValueError, match=r"holds results made with other eval.py arguments .*; use another "
                                         r"--output, or delete that folder"):
        run_ablations.main([*arguments, "--size", "48"])


def _top_k_rows(folder: Path, names: Sequence[str]) -> Path:
    """Row files that differ in top_k only (1, 2, ... in name order), in `folder`."""
    folder.mkdir()
    for index, name in enumerate(names):
        (folder / f"{name}.yaml").write_text(f"# Memory sizes: top_k {index + 1}\ninference:\n  top_k: {index + 1}\n")
    return folder


def test_run_ablations_jobs_run_rows_side_by_side_with_a_share_of_the_threads(tmp_path, recipe_checkpoint_path,
                                                                            monkeypatch):
    rows = _top_k_rows(tmp_path / "rows", ("a", "b", "c", "d"))
    (rows / "e.yaml").write_text("# Memory sizes: a again\ninference:\n  top_k: 1\n")
    both_running = threading.Barrier(2, timeout=20)  # a row waits here until a second one runs beside it
    lock, running, most_running, calls = threading.Lock(), [0], [0], []

    def child_beside_another(command, *, output, env_extra=None, **kwargs):
        with lock:
            running[0] += 1
            most_running[0] = max(most_running[0], running[0])
        both_running.wait()
        with lock:
            running[0] -= 1
            calls.append((output, dict(env_extra or {})))
        return ChildRun(tuple(command), 1, f"progress 50%\r{command[-1]} went wrong\n", None)

    monkeypatch.setattr(run_ablations, "run_child", child_beside_another)
    monkeypatch.setattr(run_ablations.os, "sched_getaffinity", lambda pid: set(range(4)))
    out = tmp_path / "out"
    entries = run_ablations.main(["--model", str(recipe_checkpoint_path), "--ablation_dir", str(rows), "--output",
                                  str(out), "--dataset", "D17", "--d17_path", str(tmp_path), "--jobs", "2"])["entries"]

    assert most_running[0] == 2 and len(calls) == 4  # e has a's settings: it is not run again
    assert all(call == (OUTPUT_CAPTURED, {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}) for call in calls)
    assert [entry.row for entry in entries] == ["a", "b", "c", "d", "e"] and entries[-1].same_as == "a"
    for entry in entries:
        folder = out / (entry.same_as or entry.row)
        assert entry.status == f"failed: eval.py exited with status 1: eval.output={folder} went wrong"
        assert (folder / run_ablations.LOG_FILE).read_text().endswith(f"eval.output={folder} went wrong\n")
    assert list(_table(out / "ablations.csv")) == ["a", "b", "c", "d", "e"]
    with pytest.raises(SystemExit):
        run_ablations.main(["--model", str(recipe_checkpoint_path), "--jobs", "0"])


def test_run_ablations_jobs_start_no_queued_row_after_an_error(tmp_path, recipe_checkpoint_path, monkeypatch):
    """Mutation checked: leaving the pool with `shutdown(wait=True)` alone (queued rows still start) fails here."""
    rows = _top_k_rows(tmp_path / "rows", [f"row{index}" for index in range(6)])
    started = []

    def child(command, **kwargs):
        started.append(command[-1])
        if len(started) == 1:
            raise RuntimeError("interrupted")
        time.sleep(0.5)
        return ChildRun(tuple(command), 0, "", None)

    monkeypatch.setattr(run_ablations, "run_child", child)
    with pytest.raises(RuntimeError, match="interrupted"):
        run_ablations.main(["--model", str(recipe_checkpoint_path), "--ablation_dir", str(rows), "--output",
                            str(tmp_path / "out"), "--dataset", "D17", "--d17_path", str(tmp_path), "--jobs", "2"])
    assert len(started) <= 3  # the failed row, the one beside it, and at most one its worker took up at once


def test_an_entries_file_of_another_kind_is_refused_naming_it(tmp_path):
    """Mutation checked: read_entries without its key check fails here (a TypeError that names no file)."""
    (tmp_path / ENTRIES_FILE).write_text('[{"row": "stores_all", "jf": 80.0}]')
    with pytest.raises(ValueError, match=rf"{tmp_path / ENTRIES_FILE}: not an ablation table of this version; "
                                         r"expected the keys \['row', 'group'"):
        read_entries(tmp_path)
    (tmp_path / ENTRIES_FILE).write_text('{"row": "stores_all"}')
    with pytest.raises(ValueError, match="expected a list of entries, got dict"):
        read_entries(tmp_path)


# ----------------------------------------------------------------------------------------------- training side
CROP = 32
TINY_STAGE3 = [
    "train.stages=3", "train.imagenet_init=false", "train.log_text_interval=1", "train.log_image_interval=0",
    "train.save_network_interval=0", "train.save_checkpoint_interval=0", "train.stage3.batch_size=1",
    "train.stage3.iterations=1", "train.stage3.finetune_iterations=0", "train.stage3.num_frames=3",
    "train.stage3.num_ref_frames=2", "train.stage3.lr_steps=[]", "train.stage3.skip_fractions=[]",
    "train.stage3.skip_values=[]",
]


def _training_data(stage: str) -> StageData:
    """One fixed clip per epoch: a square moving over noise, exact masks (1 object, 3 frames of 32×32)."""
    generator = torch.Generator().manual_seed(0)
    rgb = 0.3 * torch.randn(1, 3, 3, CROP, CROP, generator=generator)
    class_maps = torch.zeros(1, 3, 1, CROP, CROP, dtype=torch.int64)
    for frame in range(3):
        rgb[0, frame, :, 8 + frame:20 + frame, 8:20] = 1.0
        class_maps[0, frame, 0, 8 + frame:20 + frame, 8:20] = 1
    batch = {"rgb": rgb, "first_frame_gt": (class_maps[:, :1] == 1).float(), "cls_gt": class_maps,
             "selector": torch.ones(1, 1), "info": {"num_objects": torch.ones(1, dtype=torch.int64)}}
    return StageData(lambda iteration: DataPhase(max_skip=1, finetune=False),
                     lambda phase, epoch, start: iter([batch] if start == 0 else []))


def _train_row(row: str | None, save_dir: Path) -> Path:
    """One training iteration with a row's model switches; returns the final snapshot."""
    preset = None if row is None else ABLATION_DIR / f"{row}.yaml"
    config = load_config(preset, [*TINY_STAGE3, f"train.save_dir={save_dir}"])
    train.run_training(config, _training_data)
    return RunDirectory(config.train.save_dir, config.train.exp_id).snapshot("3", 1)


def test_rows_that_need_retraining_train_with_their_switches_and_eval_reads_the_sidecar(tmp_path):
    plain = _train_row(None, tmp_path / "xmem")
    stcn = _train_row("reading_l2", tmp_path / "stcn")
    no_sensory = _train_row("stores_working_only", tmp_path / "no_sensory")

    trained = {path: yaml.safe_load(path.with_suffix(".yaml").read_text())["model"]
               for path in (plain, stcn, no_sensory)}
    assert (trained[stcn]["similarity"], trained[stcn]["use_shrinkage"], trained[stcn]["use_selection"]) == (
        "l2", False, False)
    assert trained[no_sensory]["hidden_dim"] == 0 and trained[plain]["hidden_dim"] == 64
    # Same initial weights and data: only the memory read differs, so one step moves the weights differently.
    plain_weights, stcn_weights = (torch.load(path, weights_only=True) for path in (plain, stcn))
    assert not torch.equal(plain_weights["key_proj.key_proj.weight"], stcn_weights["key_proj.key_proj.weight"])
    assert not any(key.startswith(NO_SENSORY_PREFIXES) for key in torch.load(no_sensory, weights_only=True))

    # eval.py reads the sidecar: the STCN snapshot evaluated with default settings reads memory as it was trained.
    with pytest.warns(UserWarning, match="memory reading as the checkpoint was trained"):
        applied = apply_checkpoint_switches(Config(), stcn, hidden_dim=64)
    assert (applied.model.use_shrinkage, applied.model.use_selection) == (False, False)
    row = load_config(ABLATION_DIR / "stores_working_only.yaml")
    assert apply_checkpoint_switches(row, no_sensory, hidden_dim=0) is row
