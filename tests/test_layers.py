"""The house's rules, checked on the source: the layers go one way (the spec and reference at the
bottom, the adapter contract and the adapters above them, then agreement with the reference, then
timing, then the tools, in rooms that may use timing and never the reverse); every import counted,
at module level and inside functions; no module imports another's private name; every package
says what it owns; no module of the suite is a room holding two (450 lines at most)."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOTTOM = ("bnbench.reference", "bnbench.adapters")
SHARED = ("bnbench.progress", "bnbench.tables")      # small utilities every tool may use
# folder -> (its import name, the suite's packages it may import besides its own)
LAYERS = {
    "reference": ("bnbench.reference", ()),
    "adapters": ("bnbench.adapters", ("bnbench.reference",)),
    "bnbench/equivalence": ("bnbench.equivalence", BOTTOM + ("bnbench.tables",)),
    "bnbench/timing": ("bnbench.timing", BOTTOM + SHARED + ("bnbench.equivalence",)),
    "bnbench/comparisons": ("bnbench.comparisons", BOTTOM + SHARED + ("bnbench.equivalence", "bnbench.timing",
                                                                      "bnbench.publishing.figures")),
    "bnbench/verification": ("bnbench.verification", BOTTOM + SHARED + ("bnbench.equivalence", "bnbench.timing")),
    "bnbench/publishing": ("bnbench.publishing", BOTTOM + SHARED + ("bnbench.equivalence", "bnbench.timing",
                                                                    "bnbench.comparisons")),
    "bnbench/tuning": ("bnbench.tuning", BOTTOM + SHARED + ("bnbench.equivalence", "bnbench.timing", "bnbench.publishing")),
    "bnbench/lecture": ("bnbench.lecture", BOTTOM + SHARED + ("bnbench.equivalence", "bnbench.timing", "bnbench.tuning",
                                                              "bnbench.publishing")),
    "bnbench/catalogue": ("bnbench.catalogue", BOTTOM + ("bnbench.tables", "bnbench.publishing.glance")),
}
MAX_LINES = 450


def suite_imports(path, package):
    """Every bnbench module a file imports, relative imports resolved against its package, with the
    names it takes from it: [(module, line, names)]."""
    tree = ast.parse(open(path, encoding="utf-8").read(), filename=path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, node.lineno, tuple(alias.name for alias in node.names)))
    return [(module, line, names) for module, line, names in found if module == "bnbench" or module.startswith("bnbench.")]


def python_files(folder):
    for directory, _, files in os.walk(os.path.join(ROOT, folder)):
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(directory, name)


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_lower_layers_import_nothing_above_them(folder):
    package, allowed = LAYERS[folder]
    allowed = allowed + (package,)
    offences = []
    for path in python_files(folder):
        for module, line, names in suite_imports(path, package):
            targets = [module] if module != "bnbench" else [f"bnbench.{name}" for name in names]
            for target in targets:
                if not any(target == ok or target.startswith(ok + ".") for ok in allowed):
                    offences.append(f"{os.path.relpath(path, ROOT)}:{line} imports {target}")
    assert not offences, "layers must go one way:\n" + "\n".join(offences)


def test_every_folder_of_the_suite_is_in_a_layer():
    packages = {os.path.relpath(os.path.dirname(path), ROOT) for path in python_files("bnbench")} - {"bnbench"}
    assert packages <= set(LAYERS), f"packages without a layer: {sorted(packages - set(LAYERS))}"


def test_no_module_imports_another_s_private_name():
    offences = []
    for folder in ["bnbench", "adapters", "reference", "benchmarks", "tests"]:
        for path in python_files(folder):
            package = "bnbench" if folder == "bnbench" else f"bnbench.{folder}"
            for module, line, names in suite_imports(path, package):
                offences += [f"{os.path.relpath(path, ROOT)}:{line} imports {module}.{name}"
                             for name in names if name.startswith("_") and not name.startswith("__")]
    assert not offences, "\n".join(offences)


def test_every_package_says_what_it_owns_and_no_module_holds_two_rooms():
    too_long, silent = [], []
    for folder in ["bnbench", "adapters", "reference"]:
        for path in python_files(folder):
            lines = open(path, encoding="utf-8").read().count("\n")
            if lines > MAX_LINES:
                too_long.append(f"{os.path.relpath(path, ROOT)}: {lines} lines")
            if os.path.basename(path) == "__init__.py" and ast.get_docstring(ast.parse(open(path).read())) is None:
                silent.append(os.path.relpath(path, ROOT))
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"
    assert not silent, f"packages whose __init__ says nothing of what they own: {silent}"


def test_the_check_sees_a_violation(tmp_path):
    """The checker itself finds an upward import inside a function, a relative one and a private name."""
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from bnbench.timing.worker import Placement\nfrom ..comparisons import _run\n")
    found = suite_imports(str(path), "bnbench.adapters")
    assert sorted(module for module, _, _ in found) == ["bnbench.comparisons", "bnbench.timing.worker"]
    assert ("bnbench.comparisons", 3, ("_run",)) in found
