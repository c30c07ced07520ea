"""The allowed import edges of STYLE.md section 1, checked by parsing every module's imports."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "inference", "dataset", "configs", "scripts", "tests")
TOP_LEVEL_SCRIPTS = ("train", "eval")
ALLOWED = {
    "model": {"model"},
    "inference": {"inference", "model", "configs"},
    "dataset": {"dataset"},
    "configs": {"configs"},
}
TRAINING_ONLY_MODULES = {"model.trainer", "model.losses"}


def _project_imports(path: Path) -> set[str]:
    """Dotted names of the project modules that `path` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in PACKAGES + TOP_LEVEL_SCRIPTS}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_allowed_packages(package):
    for path in _modules(package):
        for name in _project_imports(path):
            assert name.split(".")[0] in ALLOWED[package], f"{path.relative_to(ROOT)} imports {name}"


def test_nothing_imports_a_cli_or_scripts():
    clis = [ROOT / f"{name}.py" for name in TOP_LEVEL_SCRIPTS if (ROOT / f"{name}.py").is_file()]
    for package in ("model", "inference", "dataset", "configs", "scripts", "clis"):
        for path in clis if package == "clis" else _modules(package):
            for name in _project_imports(path):
                top = name.split(".")[0]
                assert top not in TOP_LEVEL_SCRIPTS, f"{path.relative_to(ROOT)} imports the CLI {name}"
                if package != "scripts":
                    assert top != "scripts", f"{path.relative_to(ROOT)} imports {name}"


def _module_path(name: str) -> Path | None:
    """The file of a project module or package, if `name` is one (a name inside a module gives None)."""
    as_module = ROOT / (name.replace(".", "/") + ".py")
    as_package = ROOT / name.replace(".", "/") / "__init__.py"
    return as_module if as_module.is_file() else as_package if as_package.is_file() else None


def _reachable(start: Path) -> set[str]:
    """Project modules reachable from `start` through imports (packages' __init__ included)."""
    seen: set[str] = set()
    pending = [start]
    while pending:
        for name in _project_imports(pending.pop()):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                prefix = ".".join(parts[:depth])
                path = _module_path(prefix)
                if path is not None and prefix not in seen:
                    seen.add(prefix)
                    pending.append(path)
    return seen


def test_training_code_is_unreachable_from_inference():
    for path in _modules("inference"):
        leaked = _reachable(path) & TRAINING_ONLY_MODULES
        assert not leaked, f"{path.relative_to(ROOT)} reaches training-only {sorted(leaked)}"
