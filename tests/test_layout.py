"""The live call path never imports the offline tools (voice/offline/: stand-ins, simulator).

The offline tools are for tests, demos and benchmarks; a live module that imports them would ship them into
every request and tie the product to fakes. Management commands and tests may import them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIVE_APPS = ("accounts", "billing", "calls", "receptionist", "voice")
OFFLINE = "voice.offline"


def is_live(path: Path, root: Path = ROOT) -> bool:
    parts = path.relative_to(root).parts
    if parts[0] not in LIVE_APPS or "tests" in parts[:-1] or path.name == "conftest.py":
        return False
    if parts[:2] == ("voice", "offline"):
        return False
    return "management" not in parts[:-1]  # commands run the stand-ins on purpose


def live_modules(root: Path = ROOT) -> list[Path]:
    return sorted(path for app in LIVE_APPS for path in (root / app).rglob("*.py") if is_live(path, root))


def module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts)


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module an import statement in `path` names, relative imports resolved against its package."""
    package = module_name(path, root).rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from voice import offline` names the package through its alias
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def offline_imports(files: list[Path], root: Path = ROOT) -> list[str]:
    problems = []
    for path in files:
        offline = sorted(name for name in imported_modules(path, root)
                         if name == OFFLINE or name.startswith(OFFLINE + "."))
        if offline:
            problems.append(f"{path.relative_to(root)} imports {', '.join(offline)}")
    return problems


def test_no_live_module_imports_the_offline_tools():
    files = live_modules()
    assert len(files) > 40  # the walk really found the product
    found = {str(path.relative_to(ROOT)) for path in files}
    assert {"voice/twilio_stream.py", "voice/browser_call.py", "voice/session/call.py", "voice/agent.py"} <= found
    problems = offline_imports(files)
    assert not problems, "the live path must not import voice.offline:\n" + "\n".join(problems)


def test_the_walk_catches_absolute_from_and_relative_imports_of_the_offline_tools(tmp_path):
    voice = tmp_path / "voice"
    voice.mkdir()
    (voice / "one.py").write_text("import voice.offline.realtime\n")
    (voice / "two.py").write_text("from voice import offline\n")
    (voice / "three.py").write_text("from .offline.simulator import new_sid\n")
    (voice / "clean.py").write_text("from voice import twilio_api\nfrom . import session\n")
    problems = offline_imports(sorted(voice.glob("*.py")), root=tmp_path)
    assert [problem.split()[0] for problem in problems] == ["voice/one.py", "voice/three.py", "voice/two.py"]


def test_management_commands_and_tests_are_not_part_of_the_live_path():
    assert not is_live(ROOT / "voice" / "management" / "commands" / "realtime_standin.py")
    assert not is_live(ROOT / "voice" / "tests" / "test_standin.py")
    assert not is_live(ROOT / "voice" / "offline" / "realtime" / "server.py")
    assert is_live(ROOT / "voice" / "twilio_stream.py")
