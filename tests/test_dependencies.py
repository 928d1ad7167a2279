"""What `app/` imports comes with `pip install -e .` (the README's first command), or from the optional extra
whose feature needs it: a module imported by the server but installed only by the test extra passes every
test and fails a fresh install (httpx, when `fovea serve` began to forward to its model worker)."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib

from packaging.requirements import Requirement

from app.settings import PROJECT_ROOT

OPTIONAL = {"ray": "ray"}  # module -> the extra that installs it; imported only by the feature that needs it


def imported_modules() -> set[str]:
    names = set()
    for path in (PROJECT_ROOT / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name != "app"}


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_with(requirements: list[str]) -> set[str]:
    """The distributions these requirements install, with everything they require in turn (as installed here)."""
    found, todo = set(), [Requirement(text) for text in requirements]
    while todo:
        requirement = todo.pop()
        name = normalised(requirement.name)
        if name in found:
            continue
        found.add(name)
        for text in metadata.requires(requirement.name) or []:
            needed = Requirement(text)
            if needed.marker is None or needed.marker.evaluate({"extra": ""}):
                todo.append(needed)
    return found


def test_every_module_the_app_imports_comes_with_the_default_install_or_its_extra():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    default = installed_with(project["dependencies"])
    providers = metadata.packages_distributions()
    missing = []
    for module in sorted(imported_modules()):
        if module in OPTIONAL:
            extra = installed_with(project["optional-dependencies"][OPTIONAL[module]])
            assert {normalised(d) for d in providers[module]} & extra, f"{module}: not in the {OPTIONAL[module]} extra"
            continue
        if not {normalised(d) for d in providers.get(module, [module])} & default:
            missing.append(module)
    assert not missing, f"app/ imports {missing}, which `pip install -e .` does not install"
