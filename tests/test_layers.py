"""The house plan holds: imports only point down the layers, and no modules import each other
in a circle (module-level and function-level imports alike, read from the source)."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Lowest first; a module may import modules of its own layer or below (never in a circle).
LAYERS = (
    r"hiprompt\.(fileio|paths|registry|classnames|choices)",  # leaves: no project import
    r"hiprompt\.clip(\..*)?",  # the CLIP wrapper
    r"hiprompt\.(model|data)(\..*)?",  # the method; readers, transforms, knowledge folders
    r"hiprompt\.cache(\..*)?|hiprompt\.baselines\.(dualcoop|partial_labels)"
    r"|hiprompt\.training\.(build|metrics|runs|protocol)",  # caches; baseline models; what a config builds
    r"hiprompt\.config",  # the schema: imports the choice lists of the layers below
    r"hiprompt\.training(\..*)?|hiprompt\.toyworld(\..*)?|llm_knowledge(\..*)?",  # training; the LLM stage
    r"hiprompt\.baselines\.dualcoop_training",  # a baseline's training, on the shared one
    r"hiprompt\.apps(\..*)?",  # the tagger and the command line
)


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def project_imports(path: Path, modules: set) -> set:
    """The project modules `path` imports (a `from package import module` counts as the module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            candidates = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in candidates:
            if name in modules:
                found.add(name)
                break
    return found


def import_graph() -> dict:
    paths = [*REPO.glob("hiprompt/**/*.py"), *REPO.glob("llm_knowledge/**/*.py")]
    modules = {module_name(path) for path in paths}
    return {module_name(path): project_imports(path, modules) - {module_name(path)} for path in paths}


def layer(module: str) -> int:
    matches = [rank for rank, pattern in enumerate(LAYERS) if re.fullmatch(pattern, module)]
    assert matches, f"{module} is in no layer of the house plan (tests/test_layers.py)"
    return matches[0]


def test_imports_point_down_the_layers():
    upward = [f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
              for module, targets in import_graph().items() for target in targets
              if layer(target) > layer(module)]
    assert upward == []


def test_no_modules_import_each_other_in_a_circle():
    graph = import_graph()
    circles = []
    state = {}  # module -> 1 while on the path, 2 when done

    def visit(module, path):
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_the_llm_stage_never_imports_the_applications():
    assert [(m, t) for m, targets in import_graph().items() for t in targets
            if m.startswith("llm_knowledge") and t.startswith("hiprompt.apps")] == []
