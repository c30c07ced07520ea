"""The allowed import edges of STYLE.md section 1, checked by parsing every module's imports.

The edges, as a package may import them (`train.py`, `eval.py` and `scripts/` may import anything):
    configs    -> configs                       (the leaf: schema, loader, shared helpers)
    model      -> model, LEAF                   (the network; its training in model/training/)
    inference  -> inference, model, LEAF, and dataset.video_io / dataset.image_io (the readers of a user's
                  frames and masks; never training datasets or other training-only code, see below)
    dataset    -> dataset, LEAF                 (data readers, writers, generators, training sets)
where LEAF is `configs.schema` (the typed config) and `configs.common` (atomic writes, palette, ImageNet
normalisation, device resolution), imported by their module names (never the `configs` package, whose loader
is for the CLIs). Nothing imports a CLI or `scripts/` but the tests and, within one group of `scripts/`
(scripts/<group>/), that group's commands; nothing outside `tests/` imports `tests/`. Inside the packages, two rooms
face one way:
    model/training/        the training iteration and its plumbing: only model/training/ itself imports it
                           (and the CLIs, scripts and tests); the network never imports its training
    inference/evaluation/  the harness (metrics, scoring, rank group, pages): it may import the algorithm, but
                           nothing in inference/ outside it imports it, even indirectly
"""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "inference", "dataset", "configs", "scripts", "tests")
TOP_LEVEL_SCRIPTS = ("train", "eval")
LEAF_MODULES = {"configs.schema", "configs.common"}
ALLOWED = {
    "model": {"model"},
    "inference": {"inference", "model"},
    "dataset": {"dataset"},
    "configs": {"configs"},
}
INFERENCE_READERS = {"dataset.video_io", "dataset.image_io"}  # the only dataset modules inference may import
TRAINING = "model.training"
EVALUATION = "inference.evaluation"
TRAINING_ONLY_MODULES = {TRAINING, "dataset.training_data", "dataset.vos_dataset", "dataset.static_dataset",
                         "dataset.transforms", "dataset.tps", "dataset.sampling"}  # modules, or packages and all inside


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


def _allowed(package: str, name: str) -> bool:
    """Whether `package` may import the project module (or module member) `name`."""
    if name.split(".")[0] in ALLOWED[package]:
        return True
    allowed_modules = LEAF_MODULES | (INFERENCE_READERS if package == "inference" else set())
    return any(name == module or name.startswith(module + ".") for module in allowed_modules)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_allowed_packages(package):
    for path in _modules(package):
        for name in _project_imports(path):
            assert _allowed(package, name), f"{path.relative_to(ROOT)} imports {name}"


def test_the_leaf_imports_nothing_of_the_project_but_itself():
    for module in sorted(LEAF_MODULES):
        path = ROOT / (module.replace(".", "/") + ".py")
        assert _project_imports(path) <= {"configs.schema"}, f"{module} must stay a leaf"


def test_nothing_edits_sys_path():
    """The project is an installable package (pyproject.toml): no module reaches others by editing sys.path."""
    pattern = re.compile(r"sys\.path\.(insert|append|extend)|sys\.path\s*[+]?=")
    offenders = [str(path.relative_to(ROOT)) for path in ROOT.rglob("*.py")
                 if ".venv" not in path.parts and pattern.search(path.read_text())]
    assert offenders == []


def test_nothing_imports_a_cli_or_scripts():
    clis = [ROOT / f"{name}.py" for name in TOP_LEVEL_SCRIPTS if (ROOT / f"{name}.py").is_file()]
    for package in ("model", "inference", "dataset", "configs", "scripts", "clis"):
        for path in clis if package == "clis" else _modules(package):
            for name in _project_imports(path):
                top = name.split(".")[0]
                assert top not in TOP_LEVEL_SCRIPTS, f"{path.relative_to(ROOT)} imports the CLI {name}"
                if package != "scripts":
                    assert top != "scripts", f"{path.relative_to(ROOT)} imports {name}"


ENTRY_LINE = 'if __name__ == "__main__":'  # what makes a script module a command


def _imported_files(path: Path) -> set[Path]:
    """The project modules `path` imports, as files (a name inside a module resolves to its module)."""
    files = set()
    for name in _project_imports(path):
        module = _module_path(name) or _module_path(name.rpartition(".")[0])
        if module is not None:
            files.add(module)
    return files


def test_a_script_imports_packages_and_only_the_helpers_of_its_own_group():
    """Library code lives in the packages: a script imports them and, at most, a helper module (no entry) of its own
    group of scripts/; never a command (a module with an entry), nor a module of another group or the top level.
    Mutation checked: scripts/cuda/check_cuda_checks.py importing `from scripts.speed.time_train_step import
    random_batch` again (a command of another group) fails; so does run_study.py importing scripts.quickstart, and
    so does run_study.py importing run_ablations (a command of its own group) to call its main in-process."""
    offenders = []
    for path in _modules("scripts"):
        for module in _imported_files(path):
            if module.relative_to(ROOT).parts[0] != "scripts" or module.name == "__init__.py":
                continue
            edge = (str(path.relative_to(ROOT)), str(module.relative_to(ROOT)))
            other_group = module.parent != path.parent or path.parent == ROOT / "scripts"
            if other_group or ENTRY_LINE in module.read_text():
                offenders.append(" imports ".join(edge))
    assert offenders == []


def test_every_script_is_a_command_of_a_group_or_a_helper_its_group_uses():
    """A module of scripts/ without an entry is a helper that a command of its own group imports (nothing else may),
    and the top level holds only commands. Mutation checked: a helper module that no command imports fails."""
    commands = [path for path in _modules("scripts") if ENTRY_LINE in path.read_text()]
    used = {module for command in commands for module in _imported_files(command)}
    for path in _modules("scripts"):
        if path.name == "__init__.py" or path in commands:
            continue
        assert path.parent != ROOT / "scripts", f"{path.relative_to(ROOT)}: the top level of scripts/ holds commands"
        assert path in used, f"{path.relative_to(ROOT)} is neither a command nor a helper of one"


def test_nothing_but_the_tests_imports_tests():
    """The installed package has no `tests/`: library code a script needs lives in the packages.
    Mutation checked: scripts/cuda/check_cuda_checks.py importing tests.recipe_checkpoint again fails."""
    clis = [ROOT / f"{name}.py" for name in TOP_LEVEL_SCRIPTS if (ROOT / f"{name}.py").is_file()]
    for path in clis + [path for package in PACKAGES if package != "tests" for path in _modules(package)]:
        for name in _project_imports(path):
            assert name.split(".")[0] != "tests", f"{path.relative_to(ROOT)} imports {name}"


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


def test_inference_may_read_user_inputs_but_not_training_datasets():
    assert _allowed("inference", "dataset.video_io.frames_from") and _allowed("inference", "dataset.image_io")
    assert not _allowed("inference", "dataset.vos_dataset") and not _allowed("inference", "dataset.eval_datasets")
    assert not _allowed("model", "dataset.video_io")
    assert "dataset.video_io" in _reachable(ROOT / "inference" / "propagate.py")


def _inside(name: str, module: str) -> bool:
    """Whether the dotted `name` is `module` or lies inside it (a submodule, or a member of either)."""
    return name == module or name.startswith(module + ".")


def _module_name(path: Path) -> str:
    """The dotted module name of a project file (`inference/evaluation/__init__.py` -> `inference.evaluation`)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_training_code_is_unreachable_from_inference():
    """Mutation checked: `from model.training.losses import dice_loss` in inference/video_runner.py fails here."""
    for path in _modules("inference"):
        leaked = {name for name in _reachable(path) if any(_inside(name, module) for module in TRAINING_ONLY_MODULES)}
        assert not leaked, f"{path.relative_to(ROOT)} reaches training-only {sorted(leaked)}"


def test_only_training_code_imports_model_training():
    """The network (model/), the runtime (inference/), the data (dataset/) and the config never import the
    training room; train.py, scripts and tests may.
    Mutation checked: `from model.training.losses import dice_loss` in model/network.py fails here."""
    for package in ("model", "inference", "dataset", "configs"):
        for path in _modules(package):
            if _inside(_module_name(path), TRAINING):
                continue
            back_edges = sorted(name for name in _project_imports(path) if _inside(name, TRAINING))
            assert not back_edges, f"{path.relative_to(ROOT)} imports the training code {back_edges}"


def test_the_memory_algorithm_never_reaches_the_evaluation_harness():
    """inference/ outside inference/evaluation/ stands alone: the harness imports the algorithm, never the reverse.
    Mutation checked: `from inference.evaluation.metrics import MODE_DAVIS` in inference/memory_manager.py fails
    here (and, one step removed, the same import in inference/object_manager.py fails for inference_core.py)."""
    for path in _modules("inference"):
        if _inside(_module_name(path), EVALUATION):
            continue
        leaked = sorted(name for name in _reachable(path) if _inside(name, EVALUATION))
        assert not leaked, f"{path.relative_to(ROOT)} reaches the evaluation harness {leaked}"


def test_the_rooms_exist():
    """The rules above name real packages (a renamed room would make them pass vacuously)."""
    for room in (TRAINING, EVALUATION):
        assert _module_path(room) is not None, f"{room} is not a package"
    assert any(_inside(_module_name(path), EVALUATION) for path in _modules("inference"))


MAX_MODULE_LINES = 450
LENGTH_EXPLAINED = "Length:"  # a long module says why in its docstring, under this word


def test_modules_are_short_or_say_why():
    """No module over ~450 lines unless its docstring explains, after `Length:`, why it is one module."""
    long_unexplained = []
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts or "tests" in path.relative_to(ROOT).parts:
            continue
        source = path.read_text()
        docstring = ast.get_docstring(ast.parse(source)) or ""
        if source.count("\n") > MAX_MODULE_LINES and LENGTH_EXPLAINED not in docstring:
            long_unexplained.append(f"{path.relative_to(ROOT)} ({source.count(chr(10))} lines)")
    assert long_unexplained == []
