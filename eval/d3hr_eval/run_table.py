"""Run the student trainings behind the README's accuracy table as a resumable job queue.

Each job is one (distilled set, protocol, seed) triple, run by ``python -m d3hr_eval.validate`` into
``<results>/cells/<set>.<protocol>.s<seed>.json`` (plus a ``.log``); when it finishes, both are appended
as one line to the campaign's ``<results>/cells.jsonl`` (``{"file", "cell", "log"}``, the format
``make_table.py`` reads) and the two loose files are removed. ``--results`` is a campaign folder
``results/<YYYY-MM-DD>-<name>/`` (default: the main table's). Jobs already in ``cells.jsonl`` (or with
a finished loose JSON) are skipped, so an interrupted run continues where it stopped; a job that fails
leaves its log under ``<results>/cells/`` and is retried next time. Jobs are listed in priority order (cheap, complete
rows first) and run by ``--workers`` processes of ``--threads`` threads each -- on the 2-core machine,
two one-thread workers train about 1.6x as many students per hour as one two-thread worker (measured:
a ConvNet-3 step on 100 images takes 0.80 s on one thread, 0.64 s on two).

The distilled sets are expected under ``--runs`` with the names the README uses
(``random_real_ipcN``, ``base_ddpm_ipcN``, ``base_rs_ipcN``, ``d3hr_joint_ipcN``, ``d3hr_perdim_ipcN``,
``d3hr_joint_mM_ipc10``); a set that is missing is reported and its jobs skipped.

Examples:
    python -m d3hr_eval.run_table --list                   # the plan, in order, with what is done
    python -m d3hr_eval.run_table --workers 2 --threads 1  # run what is not done yet
    python -m d3hr_eval.make_table                         # the tables from whatever has finished
    # the soft cells again with another teacher, kept apart from the main table:
    python -m d3hr_eval.run_table --protocols soft --teacher models/fashion_mnist/checkpoints/teacher_convnet3_b.pt \
        --results results/2026-11-29-teacher-b --seeds 0 --match '.*_ipc10'
    python -m d3hr_eval.make_table --results results/2026-11-29-teacher-b
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from d3hr_eval import make_table

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TEACHER = os.path.join(REPO, "models", "fashion_mnist", "checkpoints", "teacher_convnet3.pt")

#: table rows, in the order the README prints them (make_table.py holds their labels)
ROWS = [name for name, _ in make_table.ROWS]
#: the m ablation at IPC 10 beyond the table rows (m = 1 is Base-RS, m = 1e5 the D3HR joint row)
ABLATION = [name for name, _ in make_table.ABLATION if name.startswith("d3hr_joint_m")]
#: the guidance experiments (statistics of 300 images per class, eval/make_sets.sh)
GUIDANCE = [name for name, *_ in make_table.GUIDANCE]
#: the rows, and the best guided sets, that DSA was run on first (the issue's 84.6 % hard-label goal is stated for DSA)
DSA_FIRST_ROWS = ("random_real", "d3hr_joint")
DSA_GUIDED = ("d3hr_perdim_w4_300_ipc10", "d3hr_joint_w6_300_ipc10")


def plan() -> list[tuple[str, str, int]]:
    """(set, protocol, seed) in priority order; protocol is hard, soft or dsa."""
    jobs: list[tuple[str, str, int]] = []
    for seed in (0, 1, 2):
        for row in ROWS:
            jobs += [(f"{row}_ipc1", "hard", seed), (f"{row}_ipc1", "soft", seed)]
    jobs += [(f"{row}_ipc10", "hard", 0) for row in ROWS]
    jobs += [(f"{row}_ipc10", "soft", 0) for row in ROWS]
    jobs += [(f"{row}_ipc50", "hard", 0) for row in ("random_real", "d3hr_joint")]
    jobs += [(s, proto, 0) for proto in ("hard", "soft") for s in ABLATION]
    for seed in (1, 2):
        jobs += [(f"{row}_ipc10", "hard", seed) for row in ROWS]
    for seed in (1, 2):
        jobs += [(f"{row}_ipc10", "soft", seed) for row in ROWS]
    jobs += [(f"{row}_ipc50", "hard", 0) for row in ("base_rs", "d3hr_perdim", "base_ddpm")]
    jobs += [(f"{row}_ipc10", "dsa", 0) for row in DSA_FIRST_ROWS]
    jobs += [(s, "dsa", 0) for s in DSA_GUIDED]
    jobs += [(f"{row}_ipc50", "soft", 0) for row in ROWS]
    for seed in (3, 4):
        for row in ROWS:
            jobs += [(f"{row}_ipc1", "hard", seed), (f"{row}_ipc1", "soft", seed)]
    # seeds 3 and 4 of the IPC 10 rows: the issue asks for five seeds in the final table
    for seed in (3, 4):
        jobs += [(f"{row}_ipc10", proto, seed) for proto in ("hard", "soft") for row in ROWS]
    for seed in (0, 1, 2):
        jobs += [(s, proto, seed) for s in GUIDANCE for proto in ("hard", "soft")]
    # seeds 1 and 2 of the IPC 50 rows (13-15 min per student on one thread of the thirteenth session's VM)
    for seed in (1, 2):
        jobs += [(f"{row}_ipc50", proto, seed) for proto in ("hard", "soft") for row in ROWS]
    # seeds 1-4 of the m ablation: five seeds in every cell, as in the table rows (IPC 10 students,
    # 2.5-4.5 min each on one thread of the fourteenth session's VM)
    for seed in (1, 2, 3, 4):
        jobs += [(s, proto, seed) for proto in ("hard", "soft") for s in ABLATION]
    # seeds 3 and 4 of the IPC 50 rows: five seeds in every cell of the final table (13-17 min per
    # student on one thread of the fourteenth session's VM)
    for seed in (3, 4):
        jobs += [(f"{row}_ipc50", proto, seed) for proto in ("hard", "soft") for row in ROWS]
    # the IPC 10 column of the hard + DSA table: seed 0 of the three rows not yet in it, then seeds 1-2
    # of all five, then seed 1 of the two guided sets (10.5-19 min per student on one thread of the
    # fifteenth session's AMD VM)
    jobs += [(f"{row}_ipc10", "dsa", 0) for row in ROWS if row not in DSA_FIRST_ROWS]
    for seed in (1, 2):
        jobs += [(f"{row}_ipc10", "dsa", seed) for row in ROWS]
    jobs += [(s, "dsa", 1) for s in DSA_GUIDED]
    return jobs


def cell_path(results: str, job: tuple[str, str, int]) -> str:
    name, proto, seed = job
    return os.path.join(results, "cells", f"{name}.{proto}.s{seed}.json")


def command(args: argparse.Namespace, job: tuple[str, str, int]) -> list[str]:
    name, proto, seed = job
    cmd = [sys.executable, "-m", "d3hr_eval.validate", "--data", os.path.join(args.runs, name),
           "--seeds", str(seed), "--threads", str(args.threads), "--json", cell_path(args.results, job)]
    if proto == "hard":
        cmd += ["--protocol", "hard"]
    elif proto == "dsa":
        cmd += ["--protocol", "hard", "--dsa"]
    else:
        cmd += ["--protocol", "soft", "--teacher", args.teacher]
    return cmd


_PACK = threading.Lock()


def is_done(results: str, job: tuple[str, str, int]) -> bool:
    return os.path.basename(cell_path(results, job)) in make_table.packed(results)


def pack(results: str, out: str) -> None:
    """Append a finished run (its JSON and log) to ``<results>/cells.jsonl`` as one line; remove both files."""
    log = out[:-5] + ".log"
    with open(out) as f:
        cell = json.load(f)
    text = open(log).read() if os.path.exists(log) else None
    line = json.dumps({"file": "cells/" + os.path.basename(out), "cell": cell, "log": text}, ensure_ascii=False)
    with _PACK, open(os.path.join(results, "cells.jsonl"), "a") as f:
        f.write(line + "\n")  # one write of one line: queues appending to the same file do not interleave
    os.remove(out)
    if text is not None:
        os.remove(log)


def run(args: argparse.Namespace, job: tuple[str, str, int]) -> str:
    out = cell_path(args.results, job)
    if is_done(args.results, job):  # finished meanwhile by another queue over the same results
        status = "done meanwhile, skipped"
    else:
        log = out[:-5] + ".log"
        t0 = time.time()
        with open(log, "w") as f:
            rc = subprocess.call(command(args, job), stdout=f, stderr=subprocess.STDOUT)
        if rc == 0 and os.path.exists(out):
            pack(args.results, out)
            status = "ok"
        else:
            status = f"FAILED (exit {rc}, see {log})"
        status += f" ({time.time() - t0:.0f} s)"
    line = f"{time.strftime('%H:%M:%S')} {job[0]} {job[1]} seed {job[2]}: {status}"
    print(line, flush=True)
    return line


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default=os.path.join(REPO, "runs"), help="folder holding the distilled sets")
    p.add_argument("--results", default=make_table.MAIN,
                   help="campaign folder: runs are appended to its cells.jsonl (default: the main table's)")
    p.add_argument("--teacher", default=TEACHER, help="ConvNet-3 teacher for the soft protocol")
    p.add_argument("--workers", type=int, default=2, help="parallel validate.py processes")
    p.add_argument("--threads", type=int, default=1, help="threads per process")
    p.add_argument("--match", help="run only the sets whose whole name matches this regular expression")
    p.add_argument("--seeds", help="comma-separated: run only these seeds")
    p.add_argument("--protocols", default="hard,soft,dsa", help="comma-separated: run only these protocols")
    p.add_argument("--list", action="store_true", help="print the plan and what is done, run nothing")
    args = p.parse_args()

    os.makedirs(os.path.join(args.results, "cells"), exist_ok=True)
    todo = []
    finished = make_table.packed(args.results)
    for job in plan():
        if args.match and not re.fullmatch(args.match, job[0]):
            continue
        if args.seeds and str(job[2]) not in args.seeds.split(","):
            continue
        if job[1] not in args.protocols.split(","):
            continue
        done = os.path.basename(cell_path(args.results, job)) in finished
        present = os.path.isdir(os.path.join(args.runs, job[0]))
        if args.list:
            print(f"{'done' if done else ('todo' if present else 'no set')}  {job[0]} {job[1]} seed {job[2]}")
        elif not done:
            if present:
                todo.append(job)
            else:
                print(f"skipped (no folder {os.path.join(args.runs, job[0])}): {job[0]} {job[1]} seed {job[2]}")
    if args.list or not todo:
        return
    print(f"{len(todo)} jobs, {args.workers} workers x {args.threads} threads", flush=True)
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda j: run(args, j), todo))


if __name__ == "__main__":
    main()
