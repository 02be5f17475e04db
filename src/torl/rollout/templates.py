"""Prompt templates as named data: the reference base-model prompt, chat variants, a no-tool CoT prompt.

A template is plain text with a `{problem}` placeholder (filled by `str.replace`, so LaTeX braces are safe), or a
chat template: system and user messages rendered through the tokenizer's own chat template.
Custom templates come from a file (`.txt`: plain text; `.json`/`.yaml`: the fields of `PromptTemplate`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torl.errors import UserInputError

PLACEHOLDER = "{problem}"
TIR_INSTRUCTION = (
    "Please integrate natural language reasoning with programs to solve the problem above, "
    "and put your final answer within \\boxed{}."
)
COT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
_BASE = "A conversation between User and Assistant. The user asks a question, and the Assistant solves it.\nUser: "


@dataclass(frozen=True)
class PromptTemplate:
    """kind="plain": `text` with `{problem}`. kind="chat": `system` (optional) and `user` (with `{problem}`)
    rendered by `tokenizer.apply_chat_template(..., add_generation_prompt=True)`."""

    name: str
    kind: Literal["plain", "chat"] = "plain"
    text: str = ""
    system: str | None = None
    user: str = PLACEHOLDER

    def __post_init__(self) -> None:
        if self.kind not in ("plain", "chat"):
            raise ValueError(f"template {self.name!r}: kind must be 'plain' or 'chat', got {self.kind!r}")
        body = self.text if self.kind == "plain" else self.user
        if PLACEHOLDER not in body:
            field = "text" if self.kind == "plain" else "user"
            raise ValueError(f"template {self.name!r}: field {field!r} has no {PLACEHOLDER} placeholder")

    def render(self, problem: str, tokenizer=None) -> str:
        if self.kind == "plain":
            return self.text.replace(PLACEHOLDER, problem)
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise UserInputError(f"template {self.name!r} needs a tokenizer with a chat template")
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": self.user.replace(PLACEHOLDER, problem)})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


TEMPLATES: dict[str, PromptTemplate] = {
    # the reference prompt for base models, exactly (TORL-SPEC §3)
    "torl": PromptTemplate("torl", text=_BASE + TIR_INSTRUCTION + "\n" + PLACEHOLDER + "\nAssistant:\n"),
    # instruct models: the tool instruction as system prompt (Qwen2.5-Math TIR convention)
    "torl-chat": PromptTemplate("torl-chat", kind="chat", system=TIR_INSTRUCTION),
    # no-tool chain of thought (use with max_tool_calls=0)
    "cot": PromptTemplate("cot", text=_BASE + COT_INSTRUCTION + "\n" + PLACEHOLDER + "\nAssistant:\n"),
    "cot-chat": PromptTemplate("cot-chat", kind="chat", system=COT_INSTRUCTION),
}


def get_template(name_or_path: str | Path | PromptTemplate) -> PromptTemplate:
    """A template by name (`TEMPLATES`) or from a file: `.txt` (plain, with `{problem}`) or `.json`/`.yaml`."""
    if isinstance(name_or_path, PromptTemplate):
        return name_or_path
    key = str(name_or_path)
    if key in TEMPLATES:
        return TEMPLATES[key]
    path = Path(key)
    if not path.is_file():
        raise UserInputError(f"unknown template {key!r}: not one of {sorted(TEMPLATES)} and not a file")
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        fields: dict = {"text": raw}
    elif path.suffix in (".json", ".yaml", ".yml"):
        try:
            if path.suffix == ".json":
                fields = json.loads(raw)
            else:
                import yaml

                fields = yaml.safe_load(raw)
        except Exception as e:  # noqa: BLE001 - any parse error is the user's file
            raise UserInputError(f"{path}: cannot parse template ({e})") from None
        if not isinstance(fields, dict):
            raise UserInputError(f"{path}: a template file must hold an object with 'kind', 'text' or 'user'")
        unknown = set(fields) - {"name", "kind", "text", "system", "user"}
        if unknown:
            raise UserInputError(f"{path}: unknown template field(s) {sorted(unknown)}")
    else:
        raise UserInputError(f"{path}: template files must be .txt, .json or .yaml")
    fields.setdefault("name", path.stem)
    try:
        return PromptTemplate(**fields)
    except (TypeError, ValueError) as e:
        raise UserInputError(f"{path}: {e}") from None


def build_prompt(problem: str, template: str | Path | PromptTemplate = "torl", tokenizer=None) -> str:
    """The prompt text for one problem. Chat templates need the model's `tokenizer`."""
    return get_template(template).render(problem, tokenizer)
