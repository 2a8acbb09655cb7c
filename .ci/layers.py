"""The package's layers contract, checked over the AST (run by `make lint`; tests/test_layers.py).

1. Every module of ``src/saerepro`` belongs to one layer of :data:`LAYERS`, and imports (at the top,
   inside functions, or under ``TYPE_CHECKING``) only modules of its own layer or of lower ones.
2. The imports between modules form no cycle, so every module imports on its own.
3. A package-internal import inside a function stays only to keep a heavy package out of the
   importing module: the imported module's top-level imports reach torch (or matplotlib, seaborn:
   :data:`HEAVY_PACKAGES`) and the importing module's do not. Every other one belongs at the top.
   The Snakefile parses configs, and each job imports its module, without paying for the rest.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "saerepro"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE

#: Lowest first. A module is named by its dotted path below ``saerepro``; a package's name covers
#: its submodules.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "core",
        (
            "",  # saerepro/__init__.py
            "architectures",
            "sites",
            "paper",
            "io",
            "provenance",
            "allocator",
            "model_spec",
            "own_model",
            "models",
            "corpus",
            "config",
            "paths",
            "costs",
        ),
    ),
    ("sae", ("sae",)),
    ("training", ("training", "activations", "streaming")),
    ("evaluation", ("lm", "metrics", "evaluate", "toys")),
    ("analysis", ("frontier", "pareto", "tables", "verdicts", "health", "aggregate", "figures")),
    (
        "orchestration",
        ("pipeline", "pilot", "partial", "api", "snake", "on_the_fly", "inference_opt", "learning_curve", "manifest"),
    ),
)

#: Third-party packages whose import a module may defer (torch and what imports it: ~2-5 s; the
#: plotting stack: ~2 s, paid by no training or evaluation job).
HEAVY_PACKAGES = frozenset(
    {"torch", "sae_lens", "transformer_lens", "transformers", "safetensors", "matplotlib", "seaborn"}
)


#: Function-local imports kept although nothing heavy needs them, each with its reason:
#: (module, imported module) -> why.
EXEMPT: dict[tuple[str, str], str] = {
    (
        "inference_opt",
        target,
    ): "run_inference_opt's source is hashed into every committed inference-time-optimisation row "
    "(ito_code_hash): moving its imports would make those tables stale; move them when they are regenerated"
    for target in ("evaluate", "lm", "models", "on_the_fly", "paths", "pipeline", "provenance")
}


@dataclass
class Module:
    name: str
    """Dotted name below the package ('' for the package itself)."""
    path: Path
    top: set[str] = field(default_factory=set)
    """Package modules imported at module level (outside ``TYPE_CHECKING``)."""
    typing_only: set[str] = field(default_factory=set)
    """Package modules imported under ``TYPE_CHECKING``."""
    lazy: dict[str, int] = field(default_factory=dict)
    """Package modules imported inside a function -> the first line doing so."""
    heavy_at_top: set[str] = field(default_factory=set)
    """Heavy packages (:data:`HEAVY_PACKAGES`) imported at module level."""


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _targets(node: ast.Import | ast.ImportFrom, module: Module, known: set[str]) -> list[str]:
    """Package modules (names below the package) that ``node`` imports; other imports as 'ext:<top>'."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            here = module.name.split(".") if module.name else []
            if module.path.name != "__init__.py":
                here = here[:-1]
            base = here[: len(here) - (node.level - 1)]
            stem = ".".join([PACKAGE, *base, *([node.module] if node.module else [])])
        else:
            stem = node.module or ""
        names = [
            f"{stem}.{a.name}" if f"{stem}.{a.name}".removeprefix(PACKAGE + ".") in known else stem for a in node.names
        ]
    out = []
    for full in names:
        if full == PACKAGE or full.startswith(PACKAGE + "."):
            rel = full.removeprefix(PACKAGE).removeprefix(".")
            while rel and rel not in known:
                rel = rel.rpartition(".")[0]
            out.append(rel)
        else:
            out.append("ext:" + full.split(".")[0])
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def read_modules(src: Path = SRC) -> dict[str, Module]:
    """Every module of the package at ``src`` with its imports, sorted by where they sit."""
    modules = {_module_name(p, src): Module(_module_name(p, src), p) for p in sorted(src.rglob("*.py"))}
    known = set(modules)
    for module in modules.values():
        tree = ast.parse(module.path.read_text(), str(module.path))

        def visit(node: ast.AST, where: str, module: Module = module) -> None:
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, module, known):
                    if target.startswith("ext:"):
                        if where == "top" and target[4:] in HEAVY_PACKAGES:
                            module.heavy_at_top.add(target[4:])
                    elif target != module.name:
                        if where == "top":
                            module.top.add(target)
                        elif where == "typing":
                            module.typing_only.add(target)
                        else:
                            module.lazy.setdefault(target, node.lineno)
                return
            if isinstance(node, ast.If) and _is_type_checking(node.test) and where == "top":
                for child in node.body:
                    visit(child, "typing")
                for child in node.orelse:
                    visit(child, "top")
                return
            inner = "lazy" if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) else where
            for child in ast.iter_child_nodes(node):
                visit(child, inner)

        for stmt in tree.body:
            visit(stmt, "top")
    for module in modules.values():
        # importing a.b runs a/__init__.py first
        for target in list(module.top):
            parent = target.rpartition(".")[0]
            while parent:
                if parent != module.name and not module.name.startswith(parent + "."):
                    module.top.add(parent)
                parent = parent.rpartition(".")[0]
    return modules


def layer_of(name: str, layers: Iterable[tuple[str, tuple[str, ...]]] = LAYERS) -> int | None:
    """Index of the layer holding module ``name`` (the longest matching entry), None if unassigned."""
    best: tuple[int, int] | None = None
    for index, (_, members) in enumerate(layers):
        for member in members:
            if name == member or (member and name.startswith(member + ".")):
                if best is None or len(member) > best[1]:
                    best = (index, len(member))
    return None if best is None else best[0]


def heavy_reach(modules: dict[str, Module]) -> dict[str, frozenset[str]]:
    """The heavy packages importing each module (its top-level imports, transitively) imports."""
    memo: dict[str, frozenset[str]] = {}

    def reach(name: str, seen: frozenset[str]) -> frozenset[str]:
        if name not in memo:
            module = modules[name]
            found = set(module.heavy_at_top)
            for target in module.top:
                if target in modules and target not in seen:
                    found |= reach(target, seen | {name})
            memo[name] = frozenset(found)
        return memo[name]

    return {name: reach(name, frozenset()) for name in modules}


def find_cycle(modules: dict[str, Module]) -> list[str] | None:
    """One import cycle (all imports: top, lazy and typing-only), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        module = modules[name]
        for target in sorted(module.top | module.typing_only | set(module.lazy)):
            if target not in modules:
                continue
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := walk(target)):
                return cycle
        stack.pop()
        state[name] = 2
        return None

    for name in sorted(modules):
        if name not in state and (cycle := walk(name)):
            return cycle
    return None


def violations(modules: dict[str, Module], layers=LAYERS) -> list[str]:
    """Every breach of the contract, one line each ('' when the package keeps it)."""
    names = [n for n, _ in layers]
    out = []
    for name in sorted(modules):
        if layer_of(name, layers) is None:
            out.append(f"{PACKAGE}.{name}: in no layer of .ci/layers.py's LAYERS; add it to one")
    heavy = heavy_reach(modules)
    for name, module in sorted(modules.items()):
        mine = layer_of(name, layers)
        if mine is None:
            continue
        for target in sorted(module.top | module.typing_only | set(module.lazy)):
            theirs = layer_of(target, layers)
            if theirs is not None and theirs > mine:
                out.append(
                    f"{PACKAGE}.{name} ({names[mine]}) imports {PACKAGE}.{target} ({names[theirs]}), a higher layer"
                )
        for target, line in sorted(module.lazy.items()):
            if not heavy.get(target, frozenset()) - heavy[name] and (name, target) not in EXEMPT:
                where = module.path.relative_to(
                    module.path.parents[len(name.split(".")) - (module.path.name == "__init__.py")]
                )
                out.append(
                    f"{where}:{line}: {PACKAGE}.{target} imported inside a function keeps no heavy package out "
                    "(HEAVY_PACKAGES); import it at the top"
                )
    if cycle := find_cycle(modules):
        out.append("import cycle: " + " -> ".join(f"{PACKAGE}.{c}".rstrip(".") for c in cycle))
    return out


def main() -> int:
    found = violations(read_modules())
    for line in found:
        print(line)
    print(f"layers contract: {len(found)} violation(s)" if found else "layers contract: kept")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
