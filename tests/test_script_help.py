"""Every script: its entry runs under configs.common.run_cli, its --help has no broken spacing or repeated line, and
it runs both as `python scripts/<group>/<name>.py` and as `python -m scripts.<group>.<name>`."""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS_DIR = ROOT / "scripts"
# Dotted module names below scripts/ (e.g. "study.run_ablations"), of every module with an entry.
ENTRY_SCRIPTS = sorted(".".join(path.relative_to(SCRIPTS_DIR).with_suffix("").parts)
                       for path in SCRIPTS_DIR.rglob("*.py") if 'if __name__ == "__main__":' in path.read_text())
SCRIPT_GROUPS = ("data", "evaluation", "study", "speed", "cuda")
HELP_TIMEOUT_S = 120
# A run of 2+ spaces inside text: argparse's option/positional columns and aligned example comments or tables
# (the run is followed by '#', '-' or '(') are layout; anything else is a joined line or a stray gap.
TEXT_RUN = re.compile(r"\S {2,}(?=[^\s#(-])")
ARGPARSE_COLUMN = re.compile(r"^ {2}\S.*? {2,}(?=\S)")


def _path(name: str) -> Path:
    return SCRIPTS_DIR / (name.replace(".", "/") + ".py")


def _help_text(name: str) -> str:
    module = importlib.import_module(f"scripts.{name}")
    output = io.StringIO()
    with contextlib.redirect_stdout(output), pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    return output.getvalue()


def test_every_script_with_an_entry_is_listed():
    assert {"cuda.check_cuda", "evaluation.visualize", "data.download_models", "speed.benchmark",
            "quickstart"} <= set(ENTRY_SCRIPTS)


def test_scripts_are_grouped_by_purpose():
    """The top level of scripts/ holds only the quickstart; every other
    command is in a group. Mutation checked: moving scripts/evaluation/visualize.py back to the top level fails."""
    top_level = {name for name in ENTRY_SCRIPTS if "." not in name}
    assert top_level <= {"quickstart"}, sorted(top_level)
    assert {name.split(".")[0] for name in ENTRY_SCRIPTS if "." in name} == set(SCRIPT_GROUPS)


def test_every_script_the_readme_and_configs_name_exists():
    """The README's commands and the configs' comments name scripts by path. Mutation checked: README.md naming
    scripts/visualize.py (its place before the grouping) fails."""
    texts = [ROOT / "README.md", *sorted((ROOT / "configs").rglob("*.yaml"))]
    named = {name for path in texts for name in re.findall(r"scripts/[\w/]+\.py", path.read_text())}
    assert named, "no script named: the pattern is stale"
    assert sorted(name for name in named if not (ROOT / name).is_file()) == []


# Runs `--help` of each named script as Python does for `python PATH` (the script's folder first on sys.path) or for
# `python -m MODULE` (the working directory first), in one process per form so that torch is imported once; the
# two forms run in separate processes, so that a module one form finds is never cached for the other.
HELP_DRIVER = """
import os, runpy, sys
how, root, names = sys.argv[1], sys.argv[2], sys.argv[3:]
failures = []
for name in names:
    path = os.path.join(root, "scripts", *name.split(".")) + ".py"
    sys.argv, saved_path = [path, "--help"], list(sys.path)
    try:
        if how == "path":
            sys.path[0] = os.path.dirname(path)
            runpy.run_path(path, run_name="__main__")
        else:
            runpy.run_module("scripts." + name, run_name="__main__", alter_sys=True)
        failures.append(name + ": --help did not exit")
    except SystemExit as exit_info:
        if exit_info.code not in (0, None):
            failures.append(f"{name}: exit status {exit_info.code}")
    except Exception as error:
        failures.append(f"{name}: {error!r}")
    finally:
        sys.path[:] = saved_path
sys.stderr.write("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


@pytest.mark.parametrize("how", ["path", "module"])
def test_every_script_runs_as_a_path_and_as_a_module(how):
    """`python scripts/<group>/<name>.py --help` (from outside the checkout) and `python -m scripts.<group>.<name>
    --help` (from the checkout). Mutation checked: an import of a sibling by its bare name in
    scripts/study/run_study.py (`from study_rows import ...`, which only the path form finds) fails the module form."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, "-c", HELP_DRIVER, how, str(ROOT), *ENTRY_SCRIPTS],
                               capture_output=True, text=True, cwd=ROOT if how == "module" else ROOT.parent,
                               env=environment, timeout=HELP_TIMEOUT_S)
    assert completed.returncode == 0, completed.stderr[-2000:]


@pytest.mark.parametrize("name", ENTRY_SCRIPTS)
def test_entry_uses_the_error_contract(name):
    entry = _path(name).read_text().split('if __name__ == "__main__":')[1]
    assert "run_cli(" in entry, f"{_path(name)}: wrap the entry in configs.common.run_cli"


@pytest.mark.parametrize("name", ENTRY_SCRIPTS)
def test_docstring_keeps_shell_line_continuations(name):
    """A backslash at a line's end in a plain docstring joins the lines (with the indentation in between)."""
    source = _path(name).read_text()
    docstring = re.search(r'^(r?)"""(.*?)"""', source, re.S | re.M)
    assert docstring[1] == "r" or "\\\n" not in docstring[2], f"{_path(name)}: make the docstring raw (r\"\"\")"


@pytest.mark.parametrize("name", ENTRY_SCRIPTS)
def test_help_has_no_run_of_spaces_or_duplicated_line(name):
    lines = _help_text(name).splitlines()
    repeated = sorted({line for line in lines if line.strip() and lines.count(line) > 1})
    assert not repeated, f"{_path(name)} --help repeats {repeated}"
    gaps = [line for line in lines if TEXT_RUN.search(ARGPARSE_COLUMN.sub("", line))]
    assert not gaps, f"{_path(name)} --help has runs of spaces in {gaps}"
