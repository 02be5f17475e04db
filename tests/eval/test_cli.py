import json
import socket
import subprocess
import sys

import pytest

from torl.cli import main
from torl.eval.metrics import benchmark_metrics
from torl.eval.results import build_results, write_results
from torl.eval.runner import eval_rollout


def run_cli(capsys, *argv):
    rc = main(["eval", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_list_prints_every_benchmark_with_count(capsys):
    rc, out, _ = run_cli(capsys, "--list")
    assert rc == 0
    rows = {line.split()[0]: int(line.split()[1]) for line in out.strip().splitlines()}
    assert rows == {
        "aime24": 30,
        "aime25": 30,
        "amc23": 40,
        "math500": 500,
        "olympiadbench": 675,
        "minerva_math": 272,
        "gsm8k": 1319,
    }


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


def test_unknown_benchmark_lists_valid_ones(capsys, model_dir, tmp_path):
    rc, _, err = run_cli(
        capsys, "--model", str(model_dir), "--benchmarks", "aime24,aime2O", "--out", str(tmp_path / "o")
    )
    assert rc == 2
    assert "unknown benchmark(s) 'aime2O'" in err and "aime24, aime25, amc23, math500" in err
    assert not (tmp_path / "o").exists()


def test_bad_columns_and_missing_out(capsys, model_dir, tmp_path):
    rc, _, err = run_cli(
        capsys, "--model", str(model_dir), "--columns", "problem", "--out", str(tmp_path / "o")
    )
    assert rc == 2 and "FIELD=COLUMN" in err
    rc, _, err = run_cli(capsys, "--model", str(model_dir))
    assert rc == 2 and "--out" in err


def test_missing_model_path_fails_before_anything_heavy(tmp_path):
    code = (
        "import sys\n"
        "from torl.cli import main\n"
        f"rc = main(['eval', '--model', {str(tmp_path / 'no_such_model')!r}, '--out', {str(tmp_path / 'o')!r}])\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules)\n"
        "print(rc, heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "2 []", proc.stdout + proc.stderr
    assert "model path" in proc.stderr and "no_such_model" in proc.stderr and "does not exist" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_model_dir_without_config_is_rejected(capsys, tmp_path):
    (tmp_path / "m").mkdir()
    rc, _, err = run_cli(capsys, "--model", str(tmp_path / "m"), "--out", str(tmp_path / "o"))
    assert rc == 2 and "no config.json" in err


def test_unreachable_server_is_a_clear_error(capsys, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    url = f"http://127.0.0.1:{port}/v1"
    rc, _, err = run_cli(
        capsys, "--backend", "openai", "--model", "served", "--base-url", url, "--out", str(tmp_path / "o"),
        "--tokenizer", str(tmp_path),
    )  # fmt: skip
    assert rc == 2 and f"cannot reach the server at {url}" in err
    # the served name is not a directory and no --tokenizer: say what is missing
    rc, _, err = run_cli(capsys, "--backend", "openai", "--model", "served", "--out", str(tmp_path / "o"))
    assert rc == 2 and "pass --tokenizer DIR" in err


def test_bad_generation_settings_fail_before_the_model_loads(capsys, model_dir, tmp_path):
    out = str(tmp_path / "o")
    rc, _, err = run_cli(capsys, "--model", str(model_dir), "--top-p", "0", "--out", out)
    assert rc == 2 and "top_p must be in (0, 1]" in err
    rc, _, err = run_cli(capsys, "--model", str(model_dir), "--out", out, "rollout.observation_style=fancy")
    assert rc == 2 and "override rollout.observation_style: observation_style must be one of" in err
    rc, _, err = run_cli(capsys, "--model", str(model_dir), "--template", "nope", "--out", out)
    assert rc == 2 and "unknown template 'nope'" in err
    rc, _, err = run_cli(capsys, "--model", str(model_dir), "--engine-arg", "2x=1", "--out", out)
    assert rc == 2 and "KEY=VALUE" in err
    assert not (tmp_path / "o").exists()
    # the model dir holds only a config.json: reaching the model load proves the checks above ran first
    rc, _, err = run_cli(capsys, "--model", str(model_dir), "--engine-arg", "no_such_option=1", "--out", out)
    assert rc == 2 and "--engine-arg: the transformers backend does not take it" in err


def _write_run(path, accs):
    metrics = {}
    for name, (right, total) in accs.items():
        samples = [
            {
                "problem_id": str(i),
                "sample_index": 0,
                "pred": "1",
                "correct": i < right,
                "has_code": False,
                "num_executions": 0,
                "tool_calls": [],
                "response_tokens": 5,
                "truncated": False,
            }
            for i in range(total)
        ]
        metrics[name] = benchmark_metrics(samples, 1)
    write_results(path, build_results(metrics, {"model": str(path)}))


def test_compare_with_reference(capsys, tmp_path):
    _write_run(tmp_path / "step0", {"aime24": (3, 30), "aime25": (0, 30), "math500": (300, 500)})
    _write_run(tmp_path / "step100", {"aime24": (6, 30), "aime25": (3, 30), "math500": (350, 500)})
    rc, out, _ = run_cli(
        capsys, "--compare", str(tmp_path / "step0"), str(tmp_path / "step100"), "--reference", "torl-1.5b"
    )
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == "| run | AIME24 | AIME25 | MATH500 | Olympiad | AMC23 | avg (3 common) |"
    assert lines[2].startswith("| paper: torl-1.5b | 26.7 | 26.7 | 77.8 | 44.0 | 67.5 |")
    assert lines[3] == "| step0 | 10.0 | 0.0 | 60.0 | – | – | 23.3 |"
    assert lines[4] == "| step100 | 20.0 | 10.0 | 70.0 | – | – | 33.3 |"
    rc, _, err = run_cli(capsys, "--compare", str(tmp_path / "step0"), "--reference", "gpt-9")
    assert rc == 2 and "unknown reference 'gpt-9'" in err and "torl-7b" in err
    assert (
        json.loads((tmp_path / "step0" / "results.json").read_text())["benchmarks"]["aime24"]["accuracy"]
        == 0.1
    )


def test_reusing_an_out_dir_with_other_settings_fails_before_the_model_loads(capsys, model_dir, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    rollout = {**eval_rollout().to_dict(), "temperature": 0.6}
    (out / "run.json").write_text(
        json.dumps({"model": str(model_dir.resolve()), "mode": "tir", "template": "torl", "rollout": rollout})
    )
    rc, _, err = run_cli(capsys, "--model", str(model_dir), "--out", str(out))
    # model_dir holds only a config.json: had the model loaded first, the error would be about its weights
    assert rc == 2 and "other settings (rollout.temperature: 0.6 -> 0.0)" in err
