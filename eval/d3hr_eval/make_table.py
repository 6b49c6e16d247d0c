"""Collect a campaign's student runs (written by ``python -m d3hr_eval.run_table``) into the README's tables.

A campaign folder ``results/<date>-<name>/`` holds its runs packed in ``cells.jsonl``, one line per run:
``{"file": "cells/<set>.<protocol>.s<seed>.json", "cell": <validate.py JSON>, "log": <its log>}``
(``json.dumps(cell, indent=2)`` is the original file). A run that finished but is not packed yet
(``<campaign>/cells/*.json``) is read too. A table cell is mean +- std (numpy std, ddof 0) of the student
test accuracies over the seeds that have finished, with the number of seeds; cells with no finished seed
print as "—". Writes ``table.json`` (every cell with its per-seed accuracies) and prints Markdown.

Without ``--results`` it reads the main table's campaign and writes ``results/table.json``; with
``--results DIR`` it writes ``DIR/table.json`` (``--json`` overrides both).

Examples:
    python -m d3hr_eval.make_table > results/table.md
    python -m d3hr_eval.make_table --results results/2026-11-29-teacher-b > results/2026-11-29-teacher-b/table.md
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
#: the campaign behind the README's main table (results/table.md, results/table.json)
MAIN = os.path.join(REPO, "results", "2026-11-28-main-table")
CELL = re.compile(r"(.+)\.(hard|soft|dsa)\.s(\d+)\.json$")


def packed(results: str) -> dict[str, dict]:
    """The runs of a campaign folder: ``{file name: validate.py JSON}`` for every ``cells/`` run, from
    ``cells.jsonl`` and from finished runs not packed yet (``cells/*.json``)."""
    runs: dict[str, dict] = {}
    path = os.path.join(results, "cells.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                e = json.loads(line)
                if e["cell"] is not None and os.path.dirname(e["file"]) == "cells":
                    runs[os.path.basename(e["file"])] = e["cell"]
    for p in glob.glob(os.path.join(results, "cells", "*.json")):
        with open(p) as f:
            runs.setdefault(os.path.basename(p), json.load(f))
    return runs

ROWS = [("random_real", "Random real subset"), ("base_ddpm", "Base-DDPM (DDPM mapping, m = 1)"),
        ("base_rs", "Base-RS (DDIM inversion, m = 1)"), ("d3hr_joint", "D3HR (paper profile, joint, m = 1e5)"),
        ("d3hr_perdim", "D3HR per-dim selection (m = 1e3)")]
ABLATION = [("base_rs_ipc10", "1 (Base-RS)"), ("d3hr_joint_m100_ipc10", "1e2"),
            ("d3hr_joint_m1000_ipc10", "1e3"), ("d3hr_joint_m10000_ipc10", "1e4"),
            ("d3hr_joint_ipc10", "1e5"), ("d3hr_perdim_ipc10", "per-dim, m = 1e3")]
#: the guidance experiments next to the table: guidance w in inversion and sampling, statistics of
#: 300 images per class (eval/make_sets.sh); (set, guidance, row, IPC)
_JOINT, _PERDIM = "D3HR (joint, m = 1e5)", "D3HR per-dim (m = 1e3)"
GUIDANCE = [("d3hr_joint_w2_300_ipc10", 2, _JOINT, 10), ("base_rs_w4_300_ipc10", 4, "Base-RS (m = 1)", 10)]
GUIDANCE += [(f"d3hr_{mode}_w{w}_300_ipc{ipc}", w, row, ipc)
             for w in (4, 6, 8) for ipc in (10, 1) for mode, row in (("joint", _JOINT), ("perdim", _PERDIM))]
GUIDANCE += [("d3hr_perdim_w4_300_ipc50", 4, _PERDIM, 50), ("d3hr_joint_w6_300_ipc50", 6, _JOINT, 50)]
PROTOCOLS = [("hard", "hard"), ("dsa", "hard + DSA"), ("soft", "soft")]


def collect(results: str) -> dict:
    cells: dict[str, dict] = {}
    runs = packed(results)
    for name in sorted(runs):
        m = CELL.match(name)
        if not m:
            continue
        d = runs[name]
        key = f"{m.group(1)}.{m.group(2)}"
        c = cells.setdefault(key, {"set": m.group(1), "protocol": m.group(2), "seeds": [], "accuracies": [],
                                   "seconds": []})
        for r in d["runs"]:
            c["seeds"].append(r["seed"])
            c["accuracies"].append(r["acc"])
            c["seconds"].append(round(r["seconds"], 1))
    for c in cells.values():
        a = np.array(c["accuracies"])
        c["mean"], c["std"], c["n"] = round(float(a.mean()), 2), round(float(a.std()), 2), len(a)
    return cells


def measured(cells: dict, name: str, protocols) -> bool:
    """Whether set ``name`` has a finished cell under any of ``protocols``."""
    return any(f"{name}.{p}" in cells for p in protocols)


def fmt(cells: dict, key: str) -> str:
    c = cells.get(key)
    if c is None:
        return "—"
    return f"{c['mean']:.2f} ± {c['std']:.2f} ({c['n']})" if c["n"] > 1 else f"{c['mean']:.2f} (1)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", help="campaign folder (default: the main table's, %s)" % os.path.relpath(MAIN, REPO))
    p.add_argument("--json", help="where table.json goes (default: results/table.json for the main table, "
                   "else <results>/table.json)")
    args = p.parse_args()
    results = args.results or MAIN
    out = args.json or (os.path.join(results, "table.json") if args.results else os.path.join(REPO, "results", "table.json"))
    cells = collect(results)
    with open(out, "w") as f:
        json.dump(cells, f, indent=1, sort_keys=True)

    ipcs = (1, 10, 50)
    for proto, title in PROTOCOLS:
        if not any(k.endswith("." + proto) for k in cells):
            continue
        print(f"\n**{title} labels** — test accuracy %, mean ± std (seeds)\n")
        print("| row | " + " | ".join(f"IPC {i}" for i in ipcs) + " |")
        print("|---|" + "---|" * len(ipcs))
        for row, label in ROWS:
            print(f"| {label} | " + " | ".join(fmt(cells, f"{row}_ipc{i}.{proto}") for i in ipcs) + " |")
    # a results folder with only some sets (e.g. the soft cells of a second teacher) prints only those
    ablation = [(name, label) for name, label in ABLATION if measured(cells, name, ("hard", "soft"))]
    if len(ablation) > 1:
        print("\n**m ablation, IPC 10** — test accuracy %, mean ± std (seeds)\n")
        print("| m | hard | soft |")
        print("|---|---|---|")
        for name, label in ablation:
            print(f"| {label} | {fmt(cells, name + '.hard')} | {fmt(cells, name + '.soft')} |")
    guidance = [g for g in GUIDANCE if measured(cells, g[0], [p for p, _ in PROTOCOLS])]
    if not guidance:
        return
    print("\n**Guidance in inversion and sampling** (statistics of 300 images per class) — test accuracy %,"
          " mean ± std (seeds)\n")
    print("| guidance | row | IPC | " + " | ".join(title for _, title in PROTOCOLS) + " |")
    print("|---|---|---|" + "---|" * len(PROTOCOLS))
    for name, w, label, ipc in guidance:
        print(f"| {w} | {label} | {ipc} | " + " | ".join(fmt(cells, f"{name}.{p}") for p, _ in PROTOCOLS) + " |")


if __name__ == "__main__":
    main()
