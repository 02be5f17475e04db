"""`torl data build` and `torl data limr` through the real command line entry point."""

import json
import subprocess
import sys

from torl.cli import main


def test_build_command(numina_fixture, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["data", "build", "--source", f"numina={numina_fixture}", "--out", str(out), "--benchmarks", "math500",
               "--workers", "1"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "kept 10 of 22 rows" in printed and "contaminated: 1" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["decontamination"]["benchmarks"] == {"math500": 500}
    assert (out / "train.parquet").is_file() and (out / "report.md").is_file()


def test_build_command_columns_for_a_generic_source(tmp_path, capsys):
    src = tmp_path / "gsm.jsonl"
    src.write_text("\n".join(json.dumps({"question": q, "final": a}) for q, a in
                             [("What is 6 times 7?", 42), ("What is 10 minus 3?", 7)]) + "\n")
    rc = main(["data", "build", "--source", f"generic:gsm={src}", "--columns", "gsm:problem=question,answer=final",
               "--out", str(tmp_path / "o"), "--no-decontaminate"])
    assert rc == 0 and "kept 2 of 2 rows" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "o" / "problems.jsonl").read_text().splitlines()]
    assert [(r["id"], r["answer"], r["source"]) for r in rows] == [("gsm-0", "42", "gsm"), ("gsm-1", "7", "gsm")]


def test_bad_input_is_one_line_and_exit_2(numina_fixture, tmp_path, capsys):
    bad = numina_fixture.parent / "numina_bad.jsonl"
    rc = main(["data", "build", "--source", f"numina={bad}", "--out", str(tmp_path / "o"), "--no-decontaminate"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1  # one line (progress bars only on a terminal)
    assert "torl data: error:" in err and "numina_bad.jsonl:2: invalid JSON" in err and "--skip-invalid" in err
    rc = main(["data", "build", "--source", "numina=/no/such/dir", "--out", str(tmp_path / "o")])
    assert rc == 2 and "no such file or directory" in capsys.readouterr().err
    rc = main(["data", "build", "--source", f"numina={numina_fixture}", "--columns", "nope:problem=q",
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "unknown source label(s) ['nope']" in capsys.readouterr().err


def test_limr_command(tmp_path, capsys):
    from tests.data.test_limr import HAND, write_dumps

    run = write_dumps(tmp_path / "run", HAND)
    rc = main(["data", "limr", "--samples", str(run), "--steps-per-epoch", "2", "--threshold", "0.6",
               "--out", str(tmp_path / "sel")])
    assert rc == 0 and "selected 1 of 3 problems" in capsys.readouterr().out
    assert (tmp_path / "sel" / "selected_ids.txt").read_text() == "p1\n"
    assert (tmp_path / "sel" / "scores.png").is_file()
    rc = main(["data", "limr", "--samples", str(run), "--steps-per-epoch", "0", "--out", str(tmp_path / "x")])
    assert rc == 2 and "steps-per-epoch must be >= 1" in capsys.readouterr().err


def test_data_group_help_in_a_fresh_process():
    proc = subprocess.run([sys.executable, "-m", "torl.cli", "data"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "build" in proc.stdout and "limr" in proc.stdout
