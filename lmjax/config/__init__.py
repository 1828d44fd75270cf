"""Typed experiment configs: the schema (`schema`), loading named YAML configs, presets and
overrides (`load`), and the value checks (`validate`). The names other modules use are
re-exported here, so `from lmjax.config import load_config, Config, validate` keeps working."""

from lmjax.config.schema import (ARCH_OBJECTIVE, ARCH_POSITIONS, ARCHS, ATTENTION_IMPLS, DTYPES,
                                 KERNEL_PLATFORM, MLPS, NORMS, OBJECTIVE_ARCH, OBJECTIVES,
                                 POSITIONS, REMAT, SOURCE_FORMATS, SOURCE_KEYS, TOKENIZERS,
                                 UTF8_POLICIES, CheckpointConfig, Config, DataConfig, MeshConfig,
                                 ModelConfig, SourceConfig, TrainConfig, default_axis_rules,
                                 source_configs)
from lmjax.config.paths import resolve_cache_dir, resolve_data_dir
from lmjax.config.load import (CONFIGS, PRESETS, from_dict, load_config, named_configs,
                               preset_model, preset_values, presets, to_dict, to_yaml)
from lmjax.config.validate import mesh_axis_sizes, validate_model
from lmjax.config.validate import validate  # last: the function, not the submodule, is `validate`
