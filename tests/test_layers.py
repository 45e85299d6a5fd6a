"""The package layers hold and no module imports itself back in a circle.

Every import statement of the installed packages is read with `ast` (top level, inside
functions and under `TYPE_CHECKING` alike: a lazy import is still a dependency), resolved to the
module it names, and checked against the layers of docs/architecture.md:
useful_work < chain < consensus < p2p, and inside p2p: networking (p2p.*) and the wallet
(p2p.wallet.*) never import the command line (p2p.cli.*), and the wallet imports no networking
module (it reaches a node only through its HTTP client, p2p.wallet.client). p2p.errors, the one
user-error type, is shared by all three.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("useful_work", "chain", "consensus", "p2p")
LAYER = {name: rank for rank, name in enumerate(PACKAGES)}
SHARED_IN_P2P = {"p2p.errors"}


def module_files() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports, each resolved to the deepest module that exists."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def resolve(dotted: str) -> str | None:
        parts = dotted.split(".")
        while parts:
            candidate = ".".join(parts)
            if candidate in modules:
                return candidate
            parts.pop()
        return None

    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        for target in targets:
            resolved = resolve(target)
            if resolved is not None and resolved != name:
                found.add(resolved)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def p2p_part(module: str) -> str:
    if module in SHARED_IN_P2P:
        return "shared"
    if module == "p2p.cli" or module.startswith("p2p.cli."):
        return "cli"
    if module == "p2p.wallet" or module.startswith("p2p.wallet."):
        return "wallet"
    return "networking"


def layer_violation(source: str, target: str) -> str | None:
    """Why `source` may not import `target`, or None when it may."""
    src_pkg, dst_pkg = source.split(".")[0], target.split(".")[0]
    if LAYER[dst_pkg] > LAYER[src_pkg]:
        return f"{src_pkg} is below {dst_pkg}"
    if src_pkg == dst_pkg == "p2p":
        src, dst = p2p_part(source), p2p_part(target)
        if dst == "cli" and src != "cli":
            return "only the command line imports p2p.cli"
        if src == "wallet" and dst == "networking":
            return "the wallet reaches a node only through p2p.wallet.client (HTTP)"
        if src == "shared" and dst != "shared":
            return "p2p.errors imports nothing of p2p"
    return None


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walker_sees_lazy_and_type_checking_imports() -> None:
    graph = import_graph()
    assert "useful_work.render_task" in graph["useful_work.tasks"]  # inside make_task
    assert "consensus.chainstate" in graph["p2p.api"]  # under TYPE_CHECKING
    assert "p2p.cli.devnet" in graph["p2p.cli.node"]  # `from p2p.cli import devnet`


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_circle_finder_finds_a_planted_circle() -> None:
    graph = import_graph()
    graph["chain.tx"] = graph["chain.tx"] | {"chain.state"}  # chain.state imports chain.tx
    assert any({"chain.state", "chain.tx"} <= set(c) for c in circles(graph))


def test_layers_hold() -> None:
    broken = [
        f"{source} imports {target}: {why}"
        for source, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if (why := layer_violation(source, target)) is not None
    ]
    assert broken == []


def test_layer_rules_refuse_what_the_architecture_forbids() -> None:
    assert layer_violation("chain.state", "consensus.params") is not None
    assert layer_violation("p2p.node", "p2p.cli.main") is not None
    assert layer_violation("p2p.wallet.session", "p2p.node") is not None
    assert layer_violation("p2p.wallet.session", "p2p.wallet.client") is None
    assert layer_violation("p2p.cli.wallet", "p2p.wallet.session") is None
