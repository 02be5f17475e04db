"""Fixtures for the veRL tests: a tiny trained model, veRL's composed config of a recipe, torl's parquet, and the
one stand-in allowed: the inference server (veRL's `generate` contract on torl's transformers backend)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.engine_models import vllm_model_dir
from tests.threads import one_torch_thread

REPO = Path(__file__).resolve().parents[2]
RECIPE_1_5B = REPO / "configs" / "verl" / "torl_1.5b.yaml"
RECIPE_7B = REPO / "configs" / "verl" / "torl_7b.yaml"


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tokenizer + Qwen2 LM fitted for a few seconds to TIR transcripts: it writes ```python blocks.
    Two heads of 32 dimensions: vLLM's CPU attention needs head size >= 32."""
    return vllm_model_dir()


def compose(overrides: list[str]):
    """veRL's own hydra composition of ppo_trainer.yaml with `overrides` (what main_ppo receives)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import verl

    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=overrides)


def small_overrides(model_dir: Path, data_file: Path, verl: tuple[str, ...] = (), **torl) -> list[str]:
    """The 1.5B recipe's veRL command, shrunk to the tiny model and a CPU-sized batch (then `verl` overrides)."""
    from torl.verl.recipe import load_recipe

    extra = [f"torl.{k}={v}" for k, v in torl.items()]
    recipe = load_recipe(RECIPE_1_5B, [
        f"actor_rollout_ref.model.path={model_dir}", f"data.train_files={data_file}", f"data.val_files={data_file}",
        "data.max_prompt_length=128", "data.max_response_length=96", "data.train_batch_size=2",
        "actor_rollout_ref.rollout.n=2", "actor_rollout_ref.actor.ppo_mini_batch_size=2", "torl.sandbox=local",
        "torl.sandbox_pool_size=2", *extra, *verl,
    ])
    return recipe.overrides()


class LocalActor:
    """Stands in for a Ray actor handle only (the transport): `handle.method.remote(...)` awaits the real
    object's method in this process."""

    def __init__(self, obj) -> None:
        self._obj = obj

    def __getattr__(self, name):
        return SimpleNamespace(remote=getattr(self._obj, name))


class TransformersServer:
    """The inference server behind veRL's `LLMServerClient.generate(request_id, *, prompt_ids, sampling_params)`:
    the params are turned into vLLM's real `SamplingParams` exactly as veRL's vLLM server does (so a key vLLM
    does not know fails here too), and a real model (torl's transformers backend) samples. Like veRL's vLLM
    server it reports both "stop" and "length" as "completed" and returns logprobs only when asked."""

    def __init__(self, model_dir: Path, response_length: int) -> None:
        from torl.rollout.backends.transformers_backend import TransformersBackend

        self.backend = TransformersBackend(str(model_dir), device="cpu", dtype="float32", seed=0)
        self.response_length = response_length
        self.calls: list[dict] = []

    async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, video_data=None,
                       audio_data=None, mm_processor_kwargs=None, **kwargs):
        from verl.workers.rollout.replica import TokenOutput
        from vllm import SamplingParams

        from torl.rollout.backends.base import GenerationRequest

        params = dict(sampling_params)
        max_tokens = params.pop("max_tokens", self.response_length)
        params["logprobs"] = 0 if params.pop("logprobs", False) else None
        sp = SamplingParams(max_tokens=max_tokens, **params)
        gen = await self.backend.agenerate(GenerationRequest(
            list(prompt_ids), sp.max_tokens, tuple(sp.stop or ()), sp.temperature, sp.top_p))
        if sp.stop and not sp.include_stop_str_in_output:
            raise NotImplementedError("this stand-in serves only requests that keep the stop text")
        out = TokenOutput(token_ids=list(gen.token_ids),
                          log_probs=list(gen.logprobs) if sp.logprobs is not None else None,
                          stop_reason="completed", extra_fields={"global_steps": 0})
        self.calls.append({"request_id": request_id, "prompt_ids": list(prompt_ids), "params": sp, "out": out,
                           **kwargs})
        return out


@pytest.fixture(scope="session")
def verl_parquet(tmp_path_factory, tiny_model) -> Path:
    """A torl training parquet written by torl's own writer (what `torl data build` writes)."""
    from torl.data.verl import write_verl_parquet
    from torl.train.tiny_model import arithmetic_problems

    path = tmp_path_factory.mktemp("verl-data") / "train.parquet"
    write_verl_parquet(arithmetic_problems(4, seed=3), path)
    return path
