"""The layers go one way: the spec and reference at the bottom, the adapter contract and the
adapters above them, the tools (bnbench/*, benchmarks) on top. Checked on the source, every import
counted, at module level and inside functions."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# folder -> (its import name, the suite's packages it may import)
LAYERS = {
    "reference": ("bnbench.reference", ("bnbench.reference",)),
    "adapters": ("bnbench.adapters", ("bnbench.reference", "bnbench.adapters")),
}


def suite_imports(path, package):
    """Every bnbench module a file imports, relative imports resolved against its package."""
    tree = ast.parse(open(path, encoding="utf-8").read(), filename=path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, node.lineno))
    return [(module, line) for module, line in found if module == "bnbench" or module.startswith("bnbench.")]


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_lower_layers_import_nothing_above_them(folder):
    package, allowed = LAYERS[folder]
    offences = []
    for name in sorted(os.listdir(os.path.join(ROOT, folder))):
        if not name.endswith(".py"):
            continue
        path = os.path.join(ROOT, folder, name)
        for module, line in suite_imports(path, package):
            if not any(module == ok or module.startswith(ok + ".") for ok in allowed):
                offences.append(f"{folder}/{name}:{line} imports {module}")
    assert not offences, "layers must go one way:\n" + "\n".join(offences)


def test_the_check_sees_a_violation(tmp_path):
    """The checker itself finds an upward import inside a function and a relative one."""
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from bnbench.worker import Placement\nfrom ..paired import run\n")
    modules = [module for module, _ in suite_imports(str(path), "bnbench.adapters")]
    assert sorted(modules) == ["bnbench.paired", "bnbench.worker"]
