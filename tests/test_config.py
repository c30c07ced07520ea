"""Configuration: schema defaults, preset inheritance, overrides, type and key errors, alias flags, dumping."""
import argparse
from pathlib import Path

import pytest

from configs import (ORIGINAL_EVAL_FLAGS, Config, UnknownConfigKeyError, add_flag_aliases, config_from_dict,
                     config_to_dict, dump_config, load_config, overrides_from_flags)
from configs.loader import parse_override

PRESETS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_the_papers():
    config = load_config()
    assert config == Config()
    memory = config.inference
    assert (memory.top_k, memory.mem_every, memory.deep_update_every) == (30, 5, -1)
    assert (memory.min_working_frames, memory.max_working_frames) == (5, 10)
    assert (memory.max_long_term_elements, memory.num_prototypes) == (10000, 128)
    assert config.train.stage3.iterations == 100_000 and config.train.stage3.lr_steps == (80_000,)
    assert config.train.stage0.batch_size == 16 and config.train.stage0.num_frames == 3


def test_preset_extends_parent_and_child_wins(tmp_path):
    (tmp_path / "base.yaml").write_text("inference:\n  top_k: 20\n  mem_every: 3\neval:\n  size: 600\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ninference:\n  mem_every: 7\n")
    config = load_config(tmp_path / "child.yaml")
    assert config.inference.top_k == 20  # inherited
    assert config.inference.mem_every == 7  # overridden by the child
    assert config.eval.size == 600
    assert config.inference.num_prototypes == 128  # schema default


def test_shipped_presets_resolve_by_name():
    assert load_config("eval/d17_test").eval.split == "test"
    assert load_config("eval/d17_test").eval.dataset == "D17"
    assert load_config("eval/lv1").eval.size == -1
    assert load_config("train/recipe_012").train.stages == "012"
    for preset in PRESETS.rglob("*.yaml"):
        load_config(preset)  # every shipped preset is valid against the schema


def test_cli_overrides_apply_in_order_with_types():
    config = load_config("eval/d17", ["inference.top_k=20", "train.stage3.lr_steps=[1000, 2000]",
                                      "train.stage3.lr=3e-4", "inference.top_k=null", "eval.model=123"])
    assert config.inference.top_k is None
    assert config.train.stage3.lr_steps == (1000, 2000)
    assert config.train.stage3.lr == pytest.approx(3e-4)
    assert config.eval.model == "123"  # a string field keeps the raw text


def test_int_accepted_for_float_field():
    assert load_config(overrides=["train.stage3.lr=1"]).train.stage3.lr == 1.0


@pytest.mark.parametrize("override, message", [
    ("inference.top_k=many", "config key 'inference.top_k': expected int, got str 'many'"),
    ("inference.enable_long_term=1", "config key 'inference.enable_long_term': expected bool, got int 1"),
    ("train.stage3.lr_steps=5", "config key 'train.stage3.lr_steps': expected a list, got int 5"),
])
def test_type_errors_name_key_expected_and_received(override, message):
    with pytest.raises(TypeError, match="^" + message.replace("[", r"\[").replace("]", r"\]") + "$"):
        load_config(overrides=[override])


def test_literal_choices_are_checked():
    with pytest.raises(ValueError, match="config key 'eval.dataset': got 'D18', expected one of 'D16', 'D17'"):
        load_config(overrides=["eval.dataset=D18"])


@pytest.mark.parametrize("override, message", [
    ("inference.top_k=0", "config key 'inference.top_k': got 0, expected ≥ 1 (or null for all elements)"),
    ("inference.deep_update=immediate", "config key 'inference.deep_update': 'immediate' needs "
                                        "inference.deep_update_every ≥ 0 (the frames between deep updates), got -1"),
    ("inference.max_working_frames=5", "config keys 'inference.min_working_frames' and 'inference.max_working_frames': "
                                       "need 1 ≤ min_working_frames < max_working_frames, got 5 and 5"),
    ("inference.num_prototypes=20000", "config keys 'inference.num_prototypes' and 'inference.max_long_term_elements': "
                                       "need 1 ≤ num_prototypes ≤ max_long_term_elements, got 20000 and 10000"),
    ("train.batchnorm=live", "config key 'train.batchnorm': got 'live', expected one of 'frozen', 'batch'"),
    ("train.stage0.lr_warmup=-1", "config key 'train.stage0.lr_warmup': got -1, expected ≥ 0"),
    ("train.stage3.readout_warmup=-5", "config key 'train.stage3.readout_warmup': got -5, expected ≥ 0"),
    ("train.stage3.readout_dropout=1.0", "config key 'train.stage3.readout_dropout': got 1.0, expected a probability "
                                         "in [0, 1)"),
    ("train.stage3.lr_schedule=cosine", "config key 'train.stage3.lr_steps': got [80000], expected [] with "
                                        "lr_schedule cosine (steps belong to lr_schedule step)"),
])
def test_out_of_range_values_fail_at_load_naming_the_key(override, message):
    with pytest.raises(ValueError) as raised:
        load_config(overrides=[override])
    assert str(raised.value) == message and "\n" not in message


def test_a_partial_stage_override_keeps_the_rest_of_that_stages_defaults():
    """Overriding one setting of stage 3 keeps the paper's stage-3 lr step and fine-tune phase, and stage 0 keeps
    its own (no skip curriculum), not a bare StageConfig()'s."""
    stage3 = load_config(overrides=["train.stage3.lr=2e-5"]).train.stage3
    assert (stage3.lr, stage3.lr_steps, stage3.finetune_iterations) == (2e-5, (80_000,), 10_000)
    stage0 = config_from_dict({"train": {"stage0": {"iterations": 10}}}).train.stage0
    assert (stage0.iterations, stage0.batch_size, stage0.num_frames, stage0.skip_fractions) == (10, 16, 3, ())


def test_original_schedule_values_and_named_modes_load():
    assert load_config(overrides=["inference.mem_every=0"]).inference.mem_every == 0  # every frame, as the original
    assert load_config(overrides=["inference.deep_update_every=0"]).inference.deep_update_every == 0
    assert load_config(overrides=["inference.mem_every=-3"]).inference.mem_every == -3  # every frame
    assert load_config(overrides=["inference.deep_update_every=-2"]).inference.deep_update_every == -2  # synced
    named = load_config(overrides=["inference.memory_frames=annotated_only", "inference.deep_update=never"]).inference
    assert (named.memory_frames, named.deep_update) == ("annotated_only", "never")
    with pytest.raises(ValueError, match="config key 'inference.deep_update': got 'sometimes', expected one of "
                                         "'on_memory_frames', 'immediate', 'first_frame_only', 'never'"):
        load_config(overrides=["inference.deep_update=sometimes"])
    without_long_term = load_config(overrides=["inference.enable_long_term=false", "inference.max_working_frames=2"])
    assert without_long_term.inference.max_working_frames == 2  # the budgets are checked only when they are used


def test_unknown_key_names_key_and_closest_match(tmp_path):
    with pytest.raises(UnknownConfigKeyError, match="unknown config key 'inference.top_kk'; did you mean "
                                                    "inference.top_k"):
        load_config(overrides=["inference.top_kk=3"])
    (tmp_path / "bad.yaml").write_text("memory:\n  top_k: 3\n")
    with pytest.raises(UnknownConfigKeyError, match="unknown config key 'memory'"):
        load_config(tmp_path / "bad.yaml")


def test_malformed_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="must look like section.field=value"):
        parse_override("inference.top_k")
    with pytest.raises(FileNotFoundError, match="config preset 'no/such/preset' not found"):
        load_config("no/such/preset")
    (tmp_path / "cycle.yaml").write_text("extends: cycle.yaml\n")
    with pytest.raises(ValueError, match="levels of 'extends'"):
        load_config(tmp_path / "cycle.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping of sections, got list"):
        load_config(tmp_path / "list.yaml")


def test_dump_and_reload_is_identity(tmp_path):
    config = load_config("eval/lv3", ["inference.top_k=null", "train.stage2.lr_steps=[7]", "model.hidden_dim=0"])
    dump_config(config, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config
    assert config_to_dict(load_config(tmp_path / "resolved.yaml")) == config_to_dict(config)


def test_original_eval_flags_map_onto_schema_fields():
    parser = argparse.ArgumentParser()
    add_flag_aliases(parser)
    arguments = parser.parse_args(["--dataset", "Y19", "--max_mid_term_frames", "8", "--min_mid_term_frames", "4",
                                   "--disable_long_term", "--benchmark", "--top_k", "20", "--save_all",
                                   "--output", "out/y19"])
    config = load_config(overrides=overrides_from_flags(arguments))
    assert config.eval.dataset == "Y19" and config.eval.output == "out/y19" and config.eval.save_all
    assert (config.inference.max_working_frames, config.inference.min_working_frames) == (8, 4)
    assert config.inference.enable_long_term is False
    assert config.inference.use_amp == "off"
    assert config.inference.top_k == 20
    assert config.eval.flip is False  # flags not given override nothing


def test_every_alias_names_a_real_field():
    defaults = config_to_dict(Config())
    for alias in ORIGINAL_EVAL_FLAGS:
        section, name = alias.field.split(".")
        assert name in defaults[section], alias
