"""The `torl` entry point: every subcommand is reachable and documented; user errors are one clean line."""

import subprocess
import sys

import pytest

from torl.cli import build_parser, main


def _subcommands(parser):
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        yield from action.choices.items()


def test_every_subcommand_has_help_text():
    parser = build_parser()
    names = dict(_subcommands(parser))
    assert "sandbox" in names
    for name, sub in names.items():
        assert sub.description or sub.format_help(), name
        for sub_name, leaf in _subcommands(sub):
            assert leaf.format_help().strip(), f"{name} {sub_name}"


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "torl.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "sandbox" in out.stdout


def test_user_error_is_one_line_exit_2(capsys):
    assert main(["sandbox", "run", "/no/such/file.py"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "torl sandbox: error: /no/such/file.py: No such file or directory"


def test_group_without_subcommand_prints_its_help(capsys):
    assert main(["sandbox"]) == 2
    assert "doctor" in capsys.readouterr().out


def test_sandbox_run_json(tmp_path, capsys):
    f = tmp_path / "s.py"
    f.write_text("print(6*7)")
    assert main(["sandbox", "run", str(f), "--json"]) == 0
    import json

    r = json.loads(capsys.readouterr().out)
    assert r["status"] == "ok" and r["stdout"] == "42\n"


@pytest.mark.parametrize("code,rc", [("print(1)", 0), ("1/0", 1)])
def test_sandbox_run_exit_status(tmp_path, code, rc):
    f = tmp_path / "s.py"
    f.write_text(code)
    assert main(["sandbox", "run", str(f)]) == rc


def test_doctor_reports_passing_probes(capsys):
    rc = main(["sandbox", "doctor", "--json"])
    import json

    report = json.loads(capsys.readouterr().out)
    assert {p["probe"] for p in report["probes"]} and rc == (0 if report["all_probes_passed"] else 1)
    # On a machine where any isolation works, confinement of writes and of the environment must hold.
    by_name = {p["probe"]: p["passed"] for p in report["probes"]}
    assert by_name["caller's environment not inherited"]
    assert by_name["writes confined to the job directory"] or not report["layers"]["landlock_abi"]
