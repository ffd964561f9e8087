"""The house rules of the layout (CONTRIBUTING.md): which folder may import which, and module sizes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "skylift"
MAX_LINES = 500

# Lower layers never import higher ones: data walks device → dialect → campaigns → database, and
# campaigns → outbox → devices → broker. Top-level modules (app, cli, context, deps, models) and the console
# assemble.
FORBIDDEN = {
    "kit": {"db", "system", "registry", "packages", "campaigns", "devices", "broker", "console"},
    "db": {"system", "registry", "packages", "campaigns", "devices", "broker", "console"},
    "system": {"registry", "packages", "campaigns", "devices", "broker", "console"},
    "registry": {"packages", "campaigns", "devices", "broker", "console"},
    "packages": {"campaigns", "devices", "broker", "console"},
    "campaigns": {"devices", "broker", "console"},
    "devices": {"broker", "console"},
    "broker": {"console"},
    # Simulated devices know Skylift only through the wire, as devices in the field do.
    "simulator": {"db", "system", "registry", "packages", "campaigns", "devices", "broker", "console"},
    # The console sits at the assembly level beside the API's endpoints: it calls the same services and
    # endpoint functions, and reaches devices only through them (never the device protocol or the broker).
    "console": {"devices", "broker", "simulator"},
}
# Alembic's environment script loads the model registry at the top; it is not a module of db/.
EXEMPT = {PACKAGE / "db" / "migrations" / "env.py"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "versions" not in p.parts)


def _capability(path: Path) -> str | None:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else None


def _imported_capabilities(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "skylift" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_layer_imports_a_higher_one(path: Path) -> None:
    capability = _capability(path)
    if capability is None or path in EXEMPT:
        return
    wrong = _imported_capabilities(path) & FORBIDDEN.get(capability, set())
    assert not wrong, f"{path.relative_to(PACKAGE)} imports {sorted(wrong)}, a layer above {capability}/"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_the_limit(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines (at most {MAX_LINES})"


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from skylift.devices.hub import DeviceHub\nimport skylift.broker.embedded\n")
    assert _imported_capabilities(module) == {"devices", "broker"}
