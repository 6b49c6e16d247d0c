"""Difference 2 (random numbers): the winning joint loss (paper Eq. 5-8, gamma target 0,
lambda = 1, 1, 0.5, IPC 10, m = 1e4 candidates) for class 0's statistics, over independent seeds,
with three generators:

* ``d3hr``: ``d3hr-cli sample --mode joint`` (PCG-64 streams + our Ziggurat), seeds 0..K-1, the loss
  read from ``manifest.json`` (``classes[0].loss``);
* ``torch``: ``torch.randn`` from a generator seeded ``12345 * j`` (j = 0..K-1; j = 0 is the authors'
  first batch seed), one batch of 10,000 candidates, as the authors draw them;
* ``numpy``: ``np.random.default_rng(j).standard_normal`` (j = 0..K-1), a stand-in for any other
  good generator.

The Python loss is checked first against the CLI on the CLI's own candidates (``--save-candidates``).

Usage: python rng.py STATS.safetensors [K=20] > rng.json
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile

from common import REPO
import numpy as np
import torch
from safetensors.numpy import load_file

STATS = sys.argv[1]
K = int(sys.argv[2]) if len(sys.argv) > 2 else 20
CLS, IPC, M, LAM = 0, 10, 10_000, (1.0, 1.0, 0.5)
CLI = os.path.join(REPO, "target", "release", "d3hr-cli")
ENV = dict(os.environ, D3HR_PYTHON=os.path.join(REPO, "target", "py", "bin", "python"))

st = load_file(STATS)
sigma = st["std"][CLS].astype(np.float64)  # population std
var = sigma ** 2
c3 = IPC / ((IPC - 1) * (IPC - 2))


def losses(g: np.ndarray) -> np.ndarray:
    """g: [m, IPC, d] float32 standard normals -> the paper loss of every candidate (float64)."""
    s1 = g.sum(1, dtype=np.float32).astype(np.float64)
    s2 = (g * g).sum(1, dtype=np.float32).astype(np.float64)
    s3 = (g * g * g).sum(1, dtype=np.float32).astype(np.float64)
    l_mu = var * (s1 / IPC) ** 2
    l_sd = var * (np.sqrt(s2 / IPC) - 1.0) ** 2
    l_g = (c3 * s3 - 0.0) ** 2
    return (LAM[0] * l_mu + LAM[1] * l_sd + LAM[2] * l_g).sum(1)


def cli(seed: int, out: str, save: bool = False) -> dict:
    cmd = [CLI, "sample", "--stats", STATS, "--ipc", str(IPC), "--m", str(M), "--mode", "joint",
           "--seed", str(seed), "--classes", str(CLS), "--threads", "1", "--quiet", "--out", out]
    if save:
        cmd.append("--save-candidates")
    subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)["classes"][0]


res = {"class": CLS, "ipc": IPC, "m": M, "lambda": LAM, "gamma_target": 0, "seeds": K, "stats": STATS}
with tempfile.TemporaryDirectory() as tmp:
    # 1. consistency of the Python loss with the CLI's, on the CLI's candidates for seed 0
    m0 = cli(0, os.path.join(tmp, "check"), save=True)
    g = load_file(os.path.join(tmp, "check", str(CLS), "candidates.safetensors"))
    g = next(iter(g.values())).reshape(M, IPC, -1)
    L = losses(g)
    res["check_on_cli_candidates"] = {"cli_loss": m0["loss"], "cli_candidate": m0["candidate"],
                                      "python_min_loss": float(L.min()), "python_argmin": int(L.argmin())}
    print(res["check_on_cli_candidates"], file=sys.stderr, flush=True)
    del g
    # 2. the three generators
    best = {"d3hr (PCG-64 + Ziggurat)": [], "torch.randn": [], "numpy default_rng": []}
    for j in range(K):
        best["d3hr (PCG-64 + Ziggurat)"].append(cli(j, os.path.join(tmp, f"s{j}"))["loss"])
        gen = torch.Generator().manual_seed(12345 * j)
        best["torch.randn"].append(float(losses(torch.randn(M, IPC, len(sigma), generator=gen).numpy()).min()))
        rng = np.random.default_rng(j)
        best["numpy default_rng"].append(float(losses(rng.standard_normal((M, IPC, len(sigma)), dtype=np.float32)).min()))
        print(j, {k: round(v[-1], 3) for k, v in best.items()}, file=sys.stderr, flush=True)

summary = {}
for k, v in best.items():
    a = np.array(v)
    summary[k] = {"mean": float(a.mean()), "std": float(a.std(ddof=1)), "min": float(a.min()),
                  "max": float(a.max()), "values": v}
names = list(best)
welch = {}
for i in range(len(names)):
    for j in range(i + 1, len(names)):
        a, b = np.array(best[names[i]]), np.array(best[names[j]])
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        welch[f"{names[i]} - {names[j]}"] = {"diff_of_means": float(a.mean() - b.mean()), "std_error": se,
                                              "t": float((a.mean() - b.mean()) / se)}
res["best_loss"] = summary
res["welch"] = welch
print(json.dumps(res, indent=1))
