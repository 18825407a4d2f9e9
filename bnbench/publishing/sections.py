"""The results page's sections that read what other commands wrote: the tuning logs, the lecture
studies, the measured conventions and the frameworks available here."""
from __future__ import annotations

import os
from typing import List

from bnbench import tables
from bnbench.comparisons import tunelog
from bnbench.equivalence import conventions
from bnbench.publishing.figures import interval, number
from bnbench.reference.io import read_json
from bnbench.timing.form import Form

LECTURE_TITLES = {"search": "Random against grid search at equal budgets", "scale": "Sampling on the right scale",
                  "batchnorm": "Batch norm on and off (learning rates, input shift, regularisation, hardmax)",
                  "test-time": "Test-time statistics: running averages against the population",
                  "frameworks": "Choosing a framework by the lecture's criteria"}


def lecture_section(results: str) -> List[str]:
    """Links to the lecture studies (results/lecture/NAME.md, `bnbench study NAME`, `make lecture`)."""
    folder = os.path.join(results, "lecture")
    found = [name for name in LECTURE_TITLES if os.path.exists(os.path.join(folder, f"{name}.md"))]
    if not found:
        return []
    lines = ["## The lecture's claims, measured", "",
             "Each study runs on the digits set with the suite's verified reference model (`bnbench study NAME`; all of "
             "them: `make lecture`) and says what it found, including where a claim does not show here.", ""]
    for name in found:
        data = read_json(os.path.join(folder, f"{name}.json")) or {}
        took = f" ({data['seconds']} s, seed {data.get('seed', 0)})" if "seconds" in data else ""
        lines.append(f"- [{LECTURE_TITLES[name]}](lecture/{name}.md){took}")
    return lines + [""]


def conventions_section(results: str) -> List[str]:
    data = read_json(os.path.join(results, "conventions.json"))
    if not data:
        return ["## Conventions", "", "No `results/conventions.json` yet (`bnbench conventions --out results`).", ""]
    lines = ["## Batch-norm conventions, measured (`bnbench conventions`)", "", conventions.markdown(data.get("rows", []))]
    if data.get("not_probed"):
        lines.append("Not probed: " + "; ".join(data["not_probed"]))
    return lines + [""]


def frameworks_section(results: str) -> List[str]:
    """Every framework of the lecture's list plus JAX, from `bnbench frameworks --json` as
    `make bench` saved it: version, modes, where it runs, or why it cannot run here."""
    data = read_json(os.path.join(results, "frameworks.json"))
    if not data:
        return []
    rows = [[row.get("name"), "yes" if row.get("available") else "no", row.get("version") or "-",
             ", ".join(row.get("modes") or []) or "-", row.get("runs_in") or "-", row.get("reason") or ""] for row in data]
    return ["## Frameworks on this machine (`bnbench frameworks`)", "",
            *tables.markdown(["framework", "available", "version", "modes", "runs in", "why not"], rows), ""]


def tuning_logs_section(results: str) -> List[str]:
    """One row per committed tuning log (results/tuning-logs/<machine>/<framework>.md): the kept
    form, how many alternatives were timed against it, the fastest of them at each size, its
    fraction of peak at large beside its own matmul's, and the log's verdict."""
    logs = tunelog.load_logs(results)
    if not logs:
        return []
    tunelog.render_all(results, logs)
    lines = ["## Tuning logs (`bnbench tunelog`)", "",
             "Each framework's forms (its other modes, its own alternatives, the allocator's) timed against the form "
             "the tables use, in paired rounds at tiny and large; each form checked against the reference first. "
             "A ratio below 1 is faster than the kept form.", ""]
    header = ["machine", "framework", "kept form", "forms timed", "fastest other at tiny", "fastest other at large",
              "fraction of peak at large", "own matmul / peak", "of own matmul", "verdict"]
    rows = []
    for log in logs:
        framework, kept = log["framework"], log["kept"]
        kept_label = str(Form.of(framework, kept))

        def fastest(size: str) -> str:
            rows = [row for row in log["compare"].get(size, {}).get("rows", [])
                    if row.get("ratio") is not None and row["label"] != kept_label]
            if not rows:
                return "-"
            best = min(rows, key=lambda row: row["ratio"])
            return f"{Form.parse(best['label']).mode_label} {interval(best['ratio'], best['ci_low'], best['ci_high'])}"

        verdict = tunelog.verdict(log)
        large = log["compare"].get("large", {})
        kept_row = next((row for row in large.get("rows", []) if row["label"] == kept_label), {})
        ceiling = next((c for c in large.get("ceilings", []) if c.get("gflops") is not None), {})
        timed = sum(1 for row in log["compare"][log["sizes"][0]]["rows"] if row.get("ratio") is not None) - 1
        link = f"[{framework}]({log['source'][:-len('json')]}md)"
        rows.append([log["machine_id"], link, f"`{kept}`", f"{timed} of {len(log['forms']) - 1}", fastest("tiny"),
                     fastest("large"), number(kept_row.get("fraction_of_peak"), 2), number(ceiling.get("fraction_of_peak"), 2),
                     number(kept_row.get("of_own_matmul"), 2),
                     "kept" if verdict["kept_stands"] else "adopt " + ", ".join(verdict["adopt"])])
    return lines + tables.markdown(header, rows) + [""]
