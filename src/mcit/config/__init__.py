"""Run configuration: validated pydantic models, loaded from YAML plus ``key=value`` overrides.

``base`` (the strict model every section shares), ``benchmark`` (the benchmark section and a
published stream's provenance), ``schema`` (model, methods, pool, evaluation, the run) and
``loading`` (YAML, published names, overrides).
"""

from mcit.config.benchmark import BaseStageConfig, BenchmarkConfig, FileTaskConfig, StreamInfo
from mcit.config.loading import apply_override, config_to_dict, load_config, parse_override
from mcit.config.schema import (
    EvalConfig,
    LoraConfig,
    MethodConfig,
    ModelConfig,
    PoolConfig,
    RunConfig,
    SelectorConfig,
    TrainConfig,
    method_list,
)

__all__ = [
    "BaseStageConfig", "BenchmarkConfig", "EvalConfig", "FileTaskConfig", "LoraConfig", "MethodConfig", "ModelConfig",
    "PoolConfig", "RunConfig", "SelectorConfig", "StreamInfo", "TrainConfig", "apply_override", "config_to_dict",
    "load_config", "method_list", "parse_override",
]  # fmt: skip
