"""Study ``frameworks``: each framework by the lecture's criteria: adapter lines and distinct API
calls (counted from its source), the paired speed ratio (from the published comparison), licence
and maintainer (package metadata, in its own environment), maintained or retired with the evidence."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from bnbench import tables
from bnbench.adapters import registry
from bnbench.adapters.contract import Adapter
from bnbench.lecture.common import figure, header, save_figure
from bnbench.reference.io import private_directory
from bnbench.timing import records


# --------------------------------------------------------------------------- 6. frameworks
def api_calls(source: str, roots: Sequence[str]) -> Tuple[int, List[str]]:
    """Distinct dotted names reached from the framework's imports in an adapter's source: every
    `x.y.z` whose x was bound by an `import`/`from ... import` of one of ``roots`` (or assigned
    from such a name, as `self.lib = lib`), written out from the module's name."""
    tree = ast.parse(source)
    aliases: Dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for name in node.names:
                if name.name.split(".")[0] in roots:
                    if name.asname:
                        aliases[name.asname] = name.name
                    else:
                        aliases[name.name.split(".")[0]] = name.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in roots:
            for name in node.names:
                aliases[name.asname or name.name] = f"{node.module}.{name.name}"
    # helpers that import the framework and return it (def _lib(): import lib; return lib)
    helpers = {node.name: aliases[node.body[-1].value.id] for node in ast.walk(tree)
               if isinstance(node, ast.FunctionDef) and node.body and isinstance(node.body[-1], ast.Return)
               and isinstance(node.body[-1].value, ast.Name) and node.body[-1].value.id in aliases}
    for node in ast.walk(tree):     # lib = _lib(), self.lib = lib, self.F = F, ...
        if not isinstance(node, ast.Assign):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in aliases:
            module = aliases[node.value.id]
        elif isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name) and node.value.func.id in helpers:
            module = helpers[node.value.func.id]
        else:
            continue
        for target in node.targets:
            if isinstance(target, ast.Name):
                aliases.setdefault(target.id, module)
            elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                aliases[f"self.{target.attr}"] = module
    found = set()

    def dotted(node) -> Optional[str]:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.append(node.id)
        parts.reverse()
        if len(parts) >= 3 and f"{parts[0]}.{parts[1]}" in aliases:
            return ".".join([aliases[f"{parts[0]}.{parts[1]}"]] + parts[2:])
        if parts[0] in aliases:
            return ".".join([aliases[parts[0]]] + parts[1:])
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            if name is not None:
                found.add(name)
    return len(found), sorted(found)


def _code_lines(source: str) -> int:
    """Lines of code: not blank, not a comment, not part of a docstring."""
    tree = ast.parse(source)
    docstring_lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstring_lines.update(range(first.lineno, first.end_lineno + 1))
    return sum(1 for number, line in enumerate(source.splitlines(), start=1)
               if line.strip() and not line.strip().startswith("#") and number not in docstring_lines)


def _metadata(adapter_class) -> Dict[str, Optional[str]]:
    """Licence, maintainer and version from the installed package's metadata, read in the
    framework's own environment (its Python, without importing the framework)."""
    distributions = list(adapter_class.packages or adapter_class.requires[:1])
    script = ("import json, sys\nfrom importlib import metadata\nout = None\n"
              "for name in sys.argv[1:]:\n"
              "    try:\n        m = metadata.metadata(name)\n    except metadata.PackageNotFoundError:\n        continue\n"
              "    classifiers = [c.split(' :: ')[-1] for c in (m.get_all('Classifier') or []) if c.startswith('License ::')]\n"
              "    licence = m.get('License-Expression') or (m.get('License') if m.get('License') and len(m.get('License')) < 80 else None)\n"
              "    out = {'distribution': name, 'version': m.get('Version'), 'licence': licence or (', '.join(classifiers) or None),\n"
              "           'maintainer': m.get('Maintainer') or m.get('Author') or m.get('Maintainer-email') or m.get('Author-email'),\n"
              "           'home_page': m.get('Home-page') or next((u.split(', ', 1)[-1] for u in (m.get_all('Project-URL') or [])), None)}\n"
              "    break\nprint(json.dumps(out))\n")
    placement = adapter_class.placement() if adapter_class.environment else None
    python = placement.python if placement is not None else sys.executable
    try:
        with private_directory() as folder:      # never the caller's directory, which -c puts on sys.path
            done = subprocess.run([python, "-c", script, *distributions], capture_output=True, text=True, timeout=60,
                                  cwd=folder)
        found = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        found = None
    return found or {"distribution": None, "version": None, "licence": None, "maintainer": None, "home_page": None}


def _speed_ratios(results: str) -> Tuple[Dict[str, Tuple[float, str]], Optional[str]]:
    """Each framework's paired ratio (best mode, against the baseline) from the newest published
    CPU comparison at medium size, float32."""
    import glob

    paths = sorted(glob.glob(os.path.join(results, "compare", "*", "cpu-medium-float32.json")), key=os.path.getmtime)
    if not paths:
        return {}, None
    compared = records.read(paths[-1], records.COMPARISON)
    ratios = {row["framework"]: (row["ratio"], f"{row['ratio']:.3g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}]")
              for row in compared["rows"] if row.get("ratio") is not None}
    return ratios, os.path.relpath(paths[-1], results)


def compute(results: str, bar) -> Dict[str, object]:
    ratios, source = _speed_ratios(results)
    rows = []
    names = [name for name in registry.names()]
    bar.reset(total=len(names))
    base_module = sys.modules[Adapter.__module__]
    modules_of = {}
    for name in names:
        # the adapter's module and the modules of the adapter classes it inherits from (Theano and
        # Lasagne build on the symbolic adapter of PyTensor's module), never the contract itself
        modules_of[name] = list(dict.fromkeys(sys.modules[c.__module__] for c in registry.local_class(name).__mro__
                                               if issubclass(c, Adapter) and sys.modules[c.__module__] is not base_module))
    for name in names:
        adapter_class = registry.local_class(name)
        module = sys.modules[adapter_class.__module__]
        texts = []
        for source_module in modules_of[name]:
            with open(source_module.__file__, encoding="utf-8") as handle:
                texts.append(handle.read())
        roots = sorted({module_name.split(".")[0] for module_name in adapter_class.requires})
        counted = [api_calls(text, roots)[1] for text in texts] if adapter_class.modes else []
        call_names = sorted(set().union(*counted)) if counted else []
        calls = len(call_names)
        meta = _metadata(adapter_class) if adapter_class.modes else {}
        ratio = ratios.get(name)
        rows.append({
            "framework": name, "modes": list(adapter_class.modes),
            "adapter": os.path.relpath(module.__file__, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
            "adapter_lines": sum(_code_lines(text) for text in texts) if adapter_class.modes else None,
            "adapter_modules": [os.path.basename(m.__file__) for m in modules_of[name]],
            "adapter_shared_with": sorted(n for n in names if n != name and set(modules_of[n]) & set(modules_of[name])),
            "api_calls": calls if adapter_class.modes else None, "api_call_names": call_names,
            "licence": meta.get("licence"), "maintainer": meta.get("maintainer"), "version": meta.get("version"),
            "speed_ratio": None if ratio is None else ratio[0], "speed_interval": None if ratio is None else ratio[1],
            "status": adapter_class.status or None,
        })
        bar.update(1)
    return {
        "claim": "choose a framework by ease of programming, running speed and whether it is truly open "
                 "(open source with good governance)",
        "rows": rows, "speed_source": source,
        "speed_means": "the paired ratio of its best mode's training step to NumPy's, medium size, float32, CPU "
                       "(bnbench compare; lower is faster), with its 95% interval",
        "api_calls_means": "distinct dotted names called through the framework's imports in the adapter's source (AST); "
                           "a library handed around as a value (the symbolic adapters' shared code) is not followed, "
                           "so those counts are low",
        "adapter_lines_means": "lines that are not blank, comments or docstrings, in the adapter's module and the "
                               "modules of the adapter classes it inherits from (shared code counts for each)",
    }


def plot(result, folder) -> List[str]:
    rows = [r for r in result["rows"] if r["speed_ratio"] is not None and r["adapter_lines"]]
    if not rows:
        return []
    plt, (fig, ax) = figure(7.5, 5)
    for row in rows:
        retired = (row["status"] or "").startswith(("retired", "unmaintained"))
        ax.scatter(row["adapter_lines"], row["speed_ratio"], s=20 + 4 * row["api_calls"],
                   color="tab:grey" if retired else "tab:blue", edgecolor="black", linewidth=0.5)
        ax.annotate(row["framework"], (row["adapter_lines"], row["speed_ratio"]), fontsize=8, xytext=(4, 3),
                    textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("adapter lines of code (ease of programming: fewer is easier)")
    ax.set_ylabel("step time / NumPy's (medium, float32, CPU; log)")
    ax.set_title("Frameworks by the lecture's criteria (grey: retired; size: API calls)")
    ax.grid(alpha=0.3)
    return [save_figure(plt, fig, folder, "frameworks.png")]


def markdown(result, plots) -> str:
    lines = header(result, "Choosing a framework")
    rows = []
    for row in result["rows"]:
        shared = f" (module shared with {', '.join(row['adapter_shared_with'])})" if row["adapter_shared_with"] else ""
        rows.append([row["framework"], f"{row['adapter_lines'] if row['adapter_lines'] is not None else '-'}{shared}",
                     row["api_calls"], row["speed_interval"] or "-", row["licence"] or "-", row["maintainer"] or "-",
                     row["status"] or "-"])
    lines += tables.markdown(["framework", "adapter lines", "API calls", "speed (× NumPy)", "licence", "maintainer", "status"],
                             rows)
    lines += ["", f"Speed: {result['speed_means']} (from `{result['speed_source']}`). API calls: "
              f"{result['api_calls_means']}. Lines: {result['adapter_lines_means']}. Licence and maintainer: the "
              "installed package's metadata, read in the framework's own environment. Status: the adapter's "
              "declaration, with its evidence.", "",
              "**What it shows.** " + _frameworks_verdict(result["rows"]), ""]
    lines += [f"![frameworks]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _frameworks_verdict(rows) -> str:
    timed = sorted((r for r in rows if r["speed_ratio"] is not None), key=lambda r: r["speed_ratio"])
    short = sorted((r for r in rows if r["adapter_lines"]), key=lambda r: r["adapter_lines"])
    retired = [r["framework"] for r in rows if (r["status"] or "").startswith(("retired", "unmaintained"))]
    parts = []
    if timed:
        parts.append(f"Fastest here: {', '.join(r['framework'] for r in timed[:3])}.")
    if short:
        parts.append(f"Shortest adapters: {', '.join(r['framework'] for r in short[:3])}.")
    parts.append(f"Retired or unmaintained: {', '.join(retired) or 'none'}; a licence alone does not keep a framework "
                 "alive, which is what 'truly open' has to weigh besides it. No framework leads on every criterion "
                 "unless the lists above share a name.")
    return " ".join(parts)
