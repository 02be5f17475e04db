"""The laptop demo (`torl demo`): warm start, GRPO with the interpreter, before/after evaluation, report."""
