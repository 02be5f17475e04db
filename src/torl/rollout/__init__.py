"""The tool-integrated rollout: generate, stop at ```output, execute, insert, continue — token-exact, concurrent.

    from torl.rollout import RolloutConfig, build_prompt, make_backend, run_rollouts
    from torl.sandbox import LocalSandbox

    backend = make_backend("transformers", "path/to/model")
    prompts = [build_prompt("What is 2 + 3?")] * 4            # 4 samples of one problem
    with LocalSandbox() as sandbox:
        results = run_rollouts(prompts, backend=backend, sandbox=sandbox, config=RolloutConfig(max_tool_calls=1))
"""

from torl.rollout.backends import BACKENDS, Backend, Generation, GenerationRequest, make_backend
from torl.rollout.config import RolloutConfig
from torl.rollout.loop import arun_rollouts, run_rollouts
from torl.rollout.observation import STYLES, extract_code, format_observation, wrap_observation
from torl.rollout.result import RolloutResult, ToolCall
from torl.rollout.templates import TEMPLATES, PromptTemplate, build_prompt, get_template

__all__ = [
    "BACKENDS",
    "STYLES",
    "TEMPLATES",
    "Backend",
    "Generation",
    "GenerationRequest",
    "PromptTemplate",
    "RolloutConfig",
    "RolloutResult",
    "ToolCall",
    "arun_rollouts",
    "build_prompt",
    "extract_code",
    "format_observation",
    "get_template",
    "make_backend",
    "run_rollouts",
    "wrap_observation",
]
