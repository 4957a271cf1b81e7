"""Import rules, checked on the source: services never import each other, domain code does no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES_DIR = REPO / "services"
SERVICE_NAMES = sorted(p.name for p in SERVICES_DIR.iterdir() if (p / "__init__.py").exists())
# What pure domain code may not touch: the database, the broker, the event loop, and the
# shared modules that wrap them.
DOMAIN_FORBIDDEN = ("asyncpg", "faststream", "aio_pika", "aiormq", "asyncio",
                    "shared.db", "shared.messaging", "shared.service", "shared.topology")


def imported_modules(path: Path) -> set[str]:
    """Every module a file of the repo imports, absolute."""
    package = ".".join(path.relative_to(REPO).parts[:-1])
    return modules_in(path.read_text(), package)


def modules_in(source: str, package: str) -> set[str]:
    """Every module ``source`` imports (``from m import n`` counts ``m`` and ``m.n``), with
    relative imports resolved against ``package``."""
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def python_files(service: str) -> list[Path]:
    return sorted((SERVICES_DIR / service).rglob("*.py"))


def test_the_services_are_found():
    assert {"ledger", "order", "margin"} <= set(SERVICE_NAMES)


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_a_service_imports_no_other_service(service):
    offending = []
    for path in python_files(service):
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "services" and len(parts) > 1 and parts[1] != service:
                offending.append(f"{path.relative_to(REPO)} imports {module}")
    assert not offending, "\n".join(offending)


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_domain_code_imports_no_database_broker_or_event_loop(service):
    offending = []
    for path in python_files(service):
        if path.name != "domain.py" and "domain" not in path.relative_to(SERVICES_DIR / service).parts[:-1]:
            continue
        for module in imported_modules(path):
            if any(module == f or module.startswith(f + ".") for f in DOMAIN_FORBIDDEN):
                offending.append(f"{path.relative_to(REPO)} imports {module}")
    assert not offending, "\n".join(offending)


def test_shared_imports_no_service():
    offending = [f"{path.relative_to(REPO)} imports {module}"
                 for path in sorted((REPO / "shared").rglob("*.py"))
                 for module in imported_modules(path) if module.split(".")[0] == "services"]
    assert not offending, "\n".join(offending)


def test_the_import_walker_sees_plain_from_and_relative_imports():
    source = "import asyncpg\nfrom services.ledger import store\nfrom ..pie import domain\nfrom . import handlers\n"
    found = modules_in(source, "services.probe")
    assert {"asyncpg", "services.ledger", "services.ledger.store", "services.pie.domain",
            "services.probe.handlers"} <= found
