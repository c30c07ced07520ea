"""Every script: its entry runs under configs.common.run_cli, and its --help has no broken spacing or repeated line."""
from __future__ import annotations

import contextlib
import importlib
import io
import re
from pathlib import Path

import pytest

SCRIPTS_DIR = Path(__file__).resolve().parents[1] / "scripts"
ENTRY_SCRIPTS = sorted(path.stem for path in SCRIPTS_DIR.glob("*.py") if 'if __name__ == "__main__":' in
                       path.read_text())
# A run of 2+ spaces inside text: argparse's option/positional columns and aligned example comments or tables
# (the run is followed by '#', '-' or '(') are layout; anything else is a joined line or a stray gap.
TEXT_RUN = re.compile(r"\S {2,}(?=[^\s#(-])")
ARGPARSE_COLUMN = re.compile(r"^ {2}\S.*? {2,}(?=\S)")


def _help_text(name: str) -> str:
    module = importlib.import_module(f"scripts.{name}")
    output = io.StringIO()
    with contextlib.redirect_stdout(output), pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    return output.getvalue()


def test_every_script_with_an_entry_is_listed():
    assert {"check_cuda", "visualize", "download_models", "benchmark", "quickstart"} <= set(ENTRY_SCRIPTS)


@pytest.mark.parametrize("name", ENTRY_SCRIPTS)
def test_entry_uses_the_error_contract(name):
    entry = (SCRIPTS_DIR / f"{name}.py").read_text().split('if __name__ == "__main__":')[1]
    assert "run_cli(" in entry, f"scripts/{name}.py: wrap the entry in configs.common.run_cli"


@pytest.mark.parametrize("name", ENTRY_SCRIPTS)
def test_docstring_keeps_shell_line_continuations(name):
    """A backslash at a line's end in a plain docstring joins the lines (with the indentation in between)."""
    source = (SCRIPTS_DIR / f"{name}.py").read_text()
    docstring = re.search(r'^(r?)"""(.*?)"""', source, re.S | re.M)
    assert docstring[1] == "r" or "\\\n" not in docstring[2], f"scripts/{name}.py: make the docstring raw (r\"\"\")"


@pytest.mark.parametrize("name", ENTRY_SCRIPTS)
def test_help_has_no_run_of_spaces_or_duplicated_line(name):
    lines = _help_text(name).splitlines()
    repeated = sorted({line for line in lines if line.strip() and lines.count(line) > 1})
    assert not repeated, f"scripts/{name}.py --help repeats {repeated}"
    gaps = [line for line in lines if TEXT_RUN.search(ARGPARSE_COLUMN.sub("", line))]
    assert not gaps, f"scripts/{name}.py --help has runs of spaces in {gaps}"
