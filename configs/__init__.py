"""Typed configuration: the schema (`configs.schema`) and its resolution from YAML presets and overrides."""
from configs.loader import (ORIGINAL_EVAL_FLAGS, FlagAlias, UnknownConfigKeyError, add_flag_aliases,
                            config_from_dict, config_to_dict, dump_config, load_config, overrides_from_flags)
from configs.schema import (Config, DataConfig, EvalConfig, InferenceConfig, ModelConfig, StageConfig,
                            TrainConfig)

__all__ = [
    "Config", "DataConfig", "EvalConfig", "FlagAlias", "InferenceConfig", "ModelConfig", "ORIGINAL_EVAL_FLAGS",
    "StageConfig", "TrainConfig", "UnknownConfigKeyError", "add_flag_aliases", "config_from_dict",
    "config_to_dict", "dump_config", "load_config", "overrides_from_flags",
]
