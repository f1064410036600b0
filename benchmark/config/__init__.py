"""The benchmark configuration: frozen sections (``schema``) and YAML + CLI loading (``loading``)."""
from __future__ import annotations

from benchmark.config.loading import (CONFIG_DIR, DEFAULT_CONFIG, deep_merge, dump_config, load_config, method_defaults,
                                      method_search_space, read_yaml)
from benchmark.config.schema import (BenchmarkConfig, DatasetSection, EvaluationConfig, ExecutionSection, MissingSection,
                                     TrainingConfig)

__all__ = ["CONFIG_DIR", "DEFAULT_CONFIG", "BenchmarkConfig", "DatasetSection", "EvaluationConfig", "ExecutionSection",
           "MissingSection", "TrainingConfig", "deep_merge", "dump_config", "load_config", "method_defaults",
           "method_search_space", "read_yaml"]
