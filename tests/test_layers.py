"""The layering of docs/architecture.md, checked on every import in the source (those under
TYPE_CHECKING and inside functions too): core packages import only core, adapters never
import each other, and only the composition root and the command line wire them."""

from __future__ import annotations

import ast
from pathlib import Path

import borderline

SOURCE = Path(borderline.__file__).parent

CORE = {
    "accounts",
    "config",
    "delivery",
    "directory",
    "dkimsign",
    "dnsrecords",
    "domains",
    "durable_sqlite",
    "law",
    "legal",
    "mailauth",
    "peering",
    "queues",
    "report",
    "residency",
    "staff",
    "store",
    "throttle",
    "tlog",
    "vault",
}
# Plumbing adapters share (TLS contexts, the witness push client, log events and metrics):
# code that is no protocol server of its own, on top of the core.
NEUTRAL = {"notices", "observe", "peers", "tls", "witnessing"}
ADAPTERS = {"smtp", "imap", "api", "console"}
ROOT = {"cloud", "runtime"}
ENTRY = {"cli", "__main__", "__init__"}

# What each layer may import, besides itself (a package may import its own modules).
ALLOWED = {
    "core": CORE,
    "neutral": CORE,
    "adapter": CORE | NEUTRAL | {"cloud"},
    "cloud": CORE | NEUTRAL,
    "runtime": CORE | NEUTRAL | ADAPTERS | {"cloud"},
    "entry": CORE | NEUTRAL | ROOT | ENTRY,
}


def layer(top: str) -> str:
    for name, members in (
        ("core", CORE),
        ("neutral", NEUTRAL),
        ("adapter", ADAPTERS),
        ("entry", ENTRY),
    ):
        if top in members:
            return name
    if top in ROOT:
        return top
    raise AssertionError(f"borderline.{top} is in no layer: add it to tests/test_layers.py")


def imported(tree: ast.AST, package: str) -> set[str]:
    """Top-level borderline modules an import names (relative imports resolved)."""
    tops = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names = [".".join([*base, node.module or ""])]
            elif node.module:
                names = [node.module]
                if node.module == "borderline":
                    names = [f"borderline.{alias.name}" for alias in node.names]
        tops |= {n.split(".")[1] for n in names if n.startswith("borderline.")}
    return tops


def test_every_import_follows_the_layers() -> None:
    broken = []
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE.parent).with_suffix("")
        module = ".".join(relative.parts)
        top = relative.parts[1]
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        allowed = ALLOWED[layer(top)] | {top}
        for target in imported(ast.parse(path.read_text()), package) - allowed:
            broken.append(f"{module} ({layer(top)}) imports borderline.{target} ({layer(target)})")
    assert not broken, "\n".join(broken)


def test_the_checker_sees_an_adapter_importing_another() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from borderline.smtp import server\n"
        "def f():\n    from ..cloud import Cloud\n"
    )
    assert imported(tree, "borderline.imap") == {"smtp", "cloud"}
