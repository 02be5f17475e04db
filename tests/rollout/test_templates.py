"""Prompt templates: the reference prompt exactly, chat variants through the tokenizer, custom files."""

import json

import pytest

from torl.errors import UserInputError
from torl.rollout import TEMPLATES, build_prompt, get_template

REFERENCE_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it.\n"
    "User: Please integrate natural language reasoning with programs to solve the problem above, and put your "
    "final answer within \\boxed{}.\nWhat is $1+1$?\nAssistant:\n"
)


def test_torl_template_is_the_reference_string():
    assert build_prompt("What is $1+1$?") == REFERENCE_PROMPT
    assert build_prompt("What is $1+1$?", "torl") == REFERENCE_PROMPT
    assert "\\boxed{}" in REFERENCE_PROMPT and "\\\\" not in REFERENCE_PROMPT


def test_braces_in_problems_are_safe():
    problem = "Find $\\frac{1}{2} + {x}$ where {problem} is literal."
    assert problem in build_prompt(problem)


def test_cot_template_has_no_tool_instruction():
    p = build_prompt("Q?", "cot")
    assert "reason step by step" in p and "programs" not in p and p.endswith("Q?\nAssistant:\n")


def test_chat_templates_use_the_tokenizer(tokenizer):
    p = build_prompt("What is 2 + 2?", "torl-chat", tokenizer)
    assert p == ("<|im_start|>system\n" + TEMPLATES["torl"].text.split("User: ")[1].split("\n")[0]
                 + "<|im_end|>\n<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n")
    assert "step by step" in build_prompt("Q", "cot-chat", tokenizer)
    with pytest.raises(UserInputError, match="chat template"):
        build_prompt("Q", "torl-chat")


def test_custom_template_files(tmp_path):
    txt = tmp_path / "mine.txt"
    txt.write_text("Solve: {problem}\nAnswer:", encoding="utf-8")
    assert build_prompt("1+1", str(txt)) == "Solve: 1+1\nAnswer:"
    js = tmp_path / "chat.json"
    js.write_text(json.dumps({"kind": "chat", "system": "Be brief.", "user": "Q: {problem}"}), encoding="utf-8")
    t = get_template(js)
    assert (t.name, t.kind, t.system, t.user) == ("chat", "chat", "Be brief.", "Q: {problem}")
    yml = tmp_path / "plain.yaml"
    yml.write_text("kind: plain\ntext: |\n  Problem: {problem}\n", encoding="utf-8")
    assert build_prompt("x", str(yml)) == "Problem: x\n"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("noplace.txt", "Solve it.", "has no {problem} placeholder"),
    ("bad.json", "{not json", "cannot parse template"),
    ("list.json", "[1, 2]", "must hold an object"),
    ("extra.json", '{"text": "{problem}", "colour": "red"}', "unknown template field"),
    ("kind.json", '{"kind": "fancy", "text": "{problem}"}', "kind must be"),
    ("t.md", "{problem}", "must be .txt, .json or .yaml"),
])
def test_bad_template_files_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserInputError) as e:
        get_template(str(path))
    assert message in str(e.value) and name in str(e.value)


def test_unknown_template_name():
    with pytest.raises(UserInputError, match="unknown template 'nope'"):
        build_prompt("x", "nope")
