"""The demo's generated problems: exact answers (checked by running the tool solution in the real sandbox),
distinct and disjoint sets, and solutions laid out exactly as the rollout engine builds a tool response."""

from __future__ import annotations

import random
import re

import pytest

from torl.demo.problems import FAMILIES, LEVELS, generate, solution_parts, solution_text, to_problems
from torl.reward import extract_answer
from torl.rollout import wrap_observation


def test_every_family_and_level_answer_is_what_its_code_prints(local_sandbox):
    exercises = [FAMILIES[f](random.Random(i), lv) for i, f in enumerate(FAMILIES) for lv in LEVELS]
    exercises += generate(60, seed=3)
    results = local_sandbox.run_many([f"print({ex.code})" for ex in exercises], timeout=10)
    for ex, res in zip(exercises, results, strict=True):
        assert res.status == "ok", (ex, res)
        assert res.stdout.strip() == str(ex.answer), ex


def test_generate_is_deterministic_distinct_and_honours_exclude():
    a = generate(200, seed=7, levels=[2, 3])
    assert [e.problem for e in a] == [e.problem for e in generate(200, seed=7, levels=[2, 3])]
    assert len({e.problem for e in a}) == 200
    assert {e.level for e in a} == {2, 3}
    assert {e.family for e in a} == set(FAMILIES)
    b = generate(200, seed=8, levels=[2, 3], exclude={e.problem for e in a})
    assert not {e.problem for e in a} & {e.problem for e in b}


def test_numbers_stay_short_enough_to_copy():
    for ex in generate(500, seed=1):
        assert len(str(ex.answer)) <= 6, ex
        assert max(len(n) for n in re.findall(r"\d+", ex.problem)) <= 6, ex


@pytest.mark.parametrize("kwargs", [{"levels": [4]}, {"levels": []}, {"families": ["nope"]}])
def test_bad_generation_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        generate(3, seed=0, **kwargs)


def test_an_impossible_number_of_distinct_problems_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="distinct"):
        generate(50, seed=0, levels=[1], families=["power"])  # only 8 level-1 powers exist


def test_tool_solution_is_model_text_then_the_engines_insertion_then_model_text():
    ex = generate(1, seed=0, levels=[3], families=["product"])[0]
    (head, by_model_1), (inserted, by_model_2), (tail, by_model_3) = solution_parts(ex, "tool")
    assert (by_model_1, by_model_2, by_model_3) == (True, False, True)
    assert head.endswith("```output") and f"print({ex.code})" in head
    # exactly what torl.rollout inserts after the model's own "```output"
    assert "```output" + inserted == wrap_observation(str(ex.answer))
    assert extract_answer(solution_text(ex, "tool")) == str(ex.answer)
    assert extract_answer(solution_text(ex, "nl")) == str(ex.answer)
    assert "```" not in solution_text(ex, "nl")
    with pytest.raises(ValueError):
        solution_parts(ex, "cot")


def test_to_problems_keeps_the_family_level_and_code():
    exs = generate(3, seed=0)
    problems = to_problems(exs, "x")
    assert [p.id for p in problems] == ["x-00000", "x-00001", "x-00002"]
    assert [p.answer for p in problems] == [str(e.answer) for e in exs]
    assert problems[0].meta == {"family": exs[0].family, "level": exs[0].level, "code": exs[0].code}
