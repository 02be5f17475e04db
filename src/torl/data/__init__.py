"""Training and evaluation problem sets: the common schema, readers, filters, LIMR selection."""

from torl.data.schema import Problem, read_problems, write_problems

__all__ = ["Problem", "read_problems", "write_problems"]
