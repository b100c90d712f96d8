"""Every third-party module the code imports is pinned where a fresh install will find it.

The product (everything outside the test folders and bench/) must run from requirements.txt alone: that is
what `make run` installs on a fresh clone. Tests and benchmarks may also use requirements-dev.txt. A module
that only arrives as another package's dependency (httpx through openai, say) counts as unpinned: the other
package may drop it in any release.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_DIRS = {".venv", ".git", "node_modules", "test-artifacts", "static", "templates", "docs"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_distributions(requirements: Path) -> set[str]:
    """Distribution names a requirements file installs directly, following `-r other.txt` includes."""
    names: set[str] = set()
    for raw in requirements.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            names |= pinned_distributions(requirements.parent / line.split(None, 1)[1])
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        assert match, f"{requirements.name}: cannot read {raw!r}"
        names.add(normalise(match.group(1)))
    return names


def source_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if not SKIPPED_DIRS.intersection(relative.parts[:-1]):
            files.append(path)
    return files


def is_test_or_bench(path: Path) -> bool:
    relative = path.relative_to(ROOT)
    return "tests" in relative.parts[:-1] or relative.parts[0] == "bench" or relative.name == "conftest.py"


def imported_top_level_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def is_our_own(module: str, importer: Path) -> bool:
    # Our packages and root scripts; pytest's rootdir insertion also lets a file import its siblings.
    for folder in (ROOT, importer.parent):
        if (folder / module).is_dir() or (folder / f"{module}.py").is_file():
            return True
    return False


def unpinned_imports(files: list[Path], pinned: set[str], root: Path = ROOT) -> list[str]:
    distributions = packages_distributions()
    problems = []
    for path in files:
        for module in sorted(imported_top_level_modules(path)):
            if module in sys.stdlib_module_names or is_our_own(module, path):
                continue
            owners = distributions.get(module)
            where = path.relative_to(root)
            if not owners:
                problems.append(f"{where}: imports {module}, which no installed distribution provides")
            elif not pinned.intersection(normalise(owner) for owner in owners):
                problems.append(f"{where}: imports {module} (from {', '.join(sorted(set(owners)))}), not pinned")
    return problems


def test_every_module_the_product_imports_is_pinned_in_requirements_txt():
    runtime_files = [path for path in source_files() if not is_test_or_bench(path)]
    assert len(runtime_files) > 50  # the walk really found the product
    problems = unpinned_imports(runtime_files, pinned_distributions(ROOT / "requirements.txt"))
    assert not problems, "add these to requirements.txt:\n" + "\n".join(problems)


def test_every_module_the_tests_import_is_pinned_in_the_requirements_files():
    test_files = [path for path in source_files() if is_test_or_bench(path)]
    assert len(test_files) > 30
    problems = unpinned_imports(test_files, pinned_distributions(ROOT / "requirements-dev.txt"))
    assert not problems, "add these to requirements-dev.txt:\n" + "\n".join(problems)


def test_the_walk_finds_a_module_that_only_arrives_through_another_package(tmp_path):
    # httpx comes with openai: importing it without pinning it is exactly the mistake this file guards against.
    module = tmp_path / "uses_httpx.py"
    module.write_text("import json\nimport httpx\nfrom . import sibling\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("openai==1.0  # brings httpx along\n")
    problems = unpinned_imports([module], pinned_distributions(requirements), root=tmp_path)
    assert len(problems) == 1 and "imports httpx (from httpx), not pinned" in problems[0]
