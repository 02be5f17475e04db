"""Training and evaluation problem sets: the common schema, readers, filters, LIMR selection."""

from torl.data.build import BuildConfig, BuildResult, build_dataset, write_outputs
from torl.data.limr import LimrConfig, LimrResult, limr_scores, select
from torl.data.readers import SourceSpec, parse_source_arg, read_problems, read_source
from torl.data.schema import Problem, write_problems
from torl.data.verl import read_verl_parquet, write_verl_parquet

__all__ = [
    "BuildConfig",
    "BuildResult",
    "LimrConfig",
    "LimrResult",
    "Problem",
    "SourceSpec",
    "build_dataset",
    "limr_scores",
    "parse_source_arg",
    "read_problems",
    "read_source",
    "read_verl_parquet",
    "select",
    "write_outputs",
    "write_problems",
    "write_verl_parquet",
]
