"""The package's layout keeps its shape: sub-packages by stage, imports running one way, small modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = REPO_ROOT / "lookalike"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every lookalike module `path` imports, lazy imports inside functions included, TYPE_CHECKING ones not."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                package = module_name(path).split(".")
                package = package if path.name == "__init__.py" else package[:-1]
                base = ".".join([*package[: len(package) - node.level + 1], node.module])
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in candidates if name in known)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    known = set(files)
    return {name: imported_modules(path, known) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node], _ = "done", stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package_lazy_imports_included():
    assert find_cycle(import_graph()) is None


def test_few_modules_at_the_top_and_a_sub_package_per_stage():
    top = [path.name for path in PACKAGE.glob("*.py")]
    packages = [path for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()]
    assert len(top) <= 8, top
    assert len(packages) >= 4
    for package in packages:
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")))
        assert docstring, f"{package.name}/__init__.py should say its one job"
    assert not {"models", "data"} & {package.name for package in packages}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: module_name(path))
def test_every_module_is_small_and_says_its_job(path: Path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400
    assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), (
        f"{path.name} should open with a one-line docstring"
    )


def test_imports_run_one_way_between_stages():
    """The app over recommend over index over backbones: a lower stage never imports a higher one."""
    order = ["backbones", "index", "indexing", "recommend", "evaluate", "finetune", "app"]
    lower_than = {
        "backbones": {"index", "indexing", "recommend", "evaluate", "finetune", "app"},
        "index": {"indexing", "recommend", "evaluate", "finetune", "app"},
        "indexing": {"recommend", "evaluate", "finetune", "app"},
        "recommend": {"indexing", "evaluate", "finetune", "app"},
        "evaluate": {"indexing", "finetune", "app"},
    }
    for module, targets in import_graph().items():
        stage = module.split(".")[1] if module.count(".") >= 1 else None
        if stage not in order:
            continue
        for target in targets:
            target_stage = target.split(".")[1] if target.count(".") >= 1 else None
            assert target_stage not in lower_than.get(stage, set()), f"{module} imports {target}"


def test_every_module_with_examples_has_its_doctests_collected():
    """pytest skips folders it takes for output (`build`, `dist`, dot-folders: `norecursedirs`): a module
    with `>>>` examples there would never be checked. Asks pytest itself what it collects."""
    with_examples = {
        path.relative_to(REPO_ROOT).as_posix()
        for path in (REPO_ROOT / "lookalike").rglob("*.py")
        if ">>>" in path.read_text(encoding="utf-8")
    }
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "lookalike"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    collected = {line.split("::", 1)[0] for line in listed.splitlines() if "::" in line}
    assert len(with_examples) >= 8 and with_examples <= collected, sorted(with_examples - collected)
