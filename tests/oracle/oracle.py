#!/usr/bin/env python3
"""Independent numpy/onnxruntime oracle for `d3hr-cli` (D3HR dataset distillation).

Written from the equations (DDIM inversion and sampling, per-class Gaussian statistics, the paper's
and the released code's group-sampling losses), not from the Rust sources; the Rust was read only
for file formats and graph input/output names.

    target/py/bin/python tests/oracle/oracle.py --cli PATH/TO/d3hr-cli [--work DIR]
    target/py/bin/python tests/oracle/oracle.py --known-answers core/tests/data/loss_known_answers.txt

End-to-end mode: makes a tiny IDX dataset, runs `d3hr-cli invert` (paper and reference profiles,
posterior mean) and `d3hr-cli sample` (joint group sampling with --save-candidates/--save-latents)
on the committed tiny graphs in models/test_data/, recomputes everything here and compares. One line
per check; exit 0 when all pass, 1 on any mismatch (with the measured error), 2 on a usage/run error.

Known-answer mode: writes fixed small arrays and their losses (paper and released-code) for the
Rust test core/tests/loss_known_answer.rs.

Only numpy, onnxruntime and the standard library are used.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "models", "test_data")

# ---------------------------------------------------------------------------------------------
# Tolerances (relative L2 unless stated)
TOL_STATS = 1e-5        # stored mean / std / std_unbiased per class
TOL_SKEW = 1e-4         # stored skewness per class (a third-moment ratio: more sensitive)
TOL_LOSS = 1e-5         # selected candidate's loss (relative)
TOL_ZT = 1e-5           # z_T = mu + sigma * g[chosen]
TOL_Z0 = 1e-4           # z_0 from our own DDIM sampling of z_T
TINY = 1e-30

# DiT schedule and grid
TRAIN_STEPS = 1000
GRID_STRIDE = 20        # DDIM "leading": 50 steps over 1000 -> 0, 20, ..., 980
PROFILES = {
    # profile: (inversion steps T, guidance, eps evaluated at, sigma target, selection loss)
    "paper": dict(steps=31, guidance=1.0, eps_at="source", std="population", loss="paper"),
    "reference": dict(steps=30, guidance=4.0, eps_at="target", std="unbiased", loss="reference"),
}

# tiny dataset
CLASSES = (0, 3, 7)     # label values (the tiny DiT knows classes 0..9, null class 10)
PER_CLASS = 6
IPC = 4
M = 200


# ---------------------------------------------------------------------------------------------
# small utilities

class Failure(Exception):
    pass


def rel_l2(got: np.ndarray, want: np.ndarray) -> float:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), TINY))


def read_safetensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse a safetensors file with the standard library: u64 LE header length, JSON header,
    raw little-endian data. Returns (tensors, __metadata__)."""
    dtypes = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
              "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        dt = np.dtype(dtypes[info["dtype"]])
        arr = np.frombuffer(raw[base + a:base + b], dtype=dt).reshape(info["shape"])
        out[name] = arr.astype(dt.newbyteorder("="))
    return out, meta


def write_idx(workdir: str, images: np.ndarray, labels: np.ndarray) -> str:
    """IDX pair: images magic 0x00000803 (n, rows, cols BE u32), labels magic 0x00000801 (n)."""
    n, rows, cols = images.shape
    img_path = os.path.join(workdir, "train-images-idx3-ubyte")
    with open(img_path, "wb") as f:
        f.write(struct.pack(">IIII", 0x00000803, n, rows, cols))
        f.write(images.astype(np.uint8).tobytes())
    with open(os.path.join(workdir, "train-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x00000801, n))
        f.write(labels.astype(np.uint8).tobytes())
    return img_path


# ---------------------------------------------------------------------------------------------
# schedule and DDIM (float64 schedule math)

def alphas_cumprod() -> np.ndarray:
    """DiT's linear beta schedule 1e-4 .. 0.02 over 1000 steps; abar_t = prod_{s<=t} (1 - beta_s)."""
    betas = np.linspace(1e-4, 0.02, TRAIN_STEPS, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def grid(steps: int) -> list[int]:
    """t_0 .. t_T on the leading 50-step grid."""
    return [GRID_STRIDE * j for j in range(steps + 1)]


def ddim_step(z: np.ndarray, eps: np.ndarray, ac: np.ndarray, a: int, b: int) -> np.ndarray:
    """One DDIM step from level a to level b: z0 = (z - sqrt(1-ac_a) eps)/sqrt(ac_a),
    z_b = sqrt(ac_b) z0 + sqrt(1-ac_b) eps. The arithmetic is float64; the latent state between
    steps is float32, as in any float32 pipeline (the DiT graph takes float32 anyway), so that
    the comparison measures the method rather than the rounding of the state."""
    z0 = (z - np.sqrt(1.0 - ac[a]) * eps) / np.sqrt(ac[a])
    return (np.sqrt(ac[b]) * z0 + np.sqrt(1.0 - ac[b]) * eps).astype(np.float32).astype(np.float64)


class Models:
    def __init__(self, threads: int = 2):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        prov = ["CPUExecutionProvider"]
        self.dit_path = os.path.join(FIXTURES, "tiny_dit.onnx")
        self.enc_path = os.path.join(FIXTURES, "tiny_vae_encoder.onnx")
        self.dec_path = os.path.join(FIXTURES, "tiny_vae_decoder.onnx")
        self.dit = ort.InferenceSession(self.dit_path, so, providers=prov)
        self.enc = ort.InferenceSession(self.enc_path, so, providers=prov)
        dm = self.dit.get_modelmeta().custom_metadata_map
        em = self.enc.get_modelmeta().custom_metadata_map
        self.latent_shape = tuple(int(v) for v in dm["latent_shape"].split(","))
        self.num_classes = int(dm["num_classes"])
        # The null (unconditional) class: index = number of classes (the metadata says so too).
        self.null_class = int(dm.get("null_class", self.num_classes))
        if self.null_class != self.num_classes:
            raise Failure(f"tiny DiT: null_class {self.null_class} != num_classes {self.num_classes}")
        self.image_shape = tuple(int(v) for v in em["image_shape"].split(","))
        self.scaling = float(np.float32(em["scaling_factor"]))

    def eps(self, z: np.ndarray, t: int, y: np.ndarray) -> np.ndarray:
        """Raw DiT output (float32 graph) as float64; only the first C channels if it has 2C."""
        c = self.latent_shape[0]
        b = z.shape[0]
        out = self.dit.run(["eps"], {"x": np.ascontiguousarray(z, dtype=np.float32),
                                     "t": np.full(b, t, dtype=np.int64),
                                     "y": np.asarray(y, dtype=np.int64)})[0]
        if out.shape[1] == 2 * c:
            out = out[:, :c]
        return out.astype(np.float64)

    def guided_eps(self, z: np.ndarray, t: int, y: np.ndarray, w: float) -> np.ndarray:
        ec = self.eps(z, t, y)
        if w == 1.0:
            return ec
        eu = self.eps(z, t, np.full(len(y), self.null_class, dtype=np.int64))
        # classifier-free guidance on the graph's float32 outputs, in float32
        eu32, ec32 = eu.astype(np.float32), ec.astype(np.float32)
        return (eu32 + np.float32(w) * (ec32 - eu32)).astype(np.float64)

    def encode(self, images_u8: np.ndarray) -> np.ndarray:
        """uint8 [B, H, W] -> z0 = s * mean(encoder(v/127.5 - 1)) (float64)."""
        x = images_u8.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        x = x.reshape((x.shape[0],) + self.image_shape).astype(np.float32)
        mean = self.enc.run(["mean"], {"image": x})[0]
        return self.scaling * mean.astype(np.float64)


def invert(models: Models, ac: np.ndarray, z0: np.ndarray, y: np.ndarray, profile: str) -> np.ndarray:
    p = PROFILES[profile]
    g = grid(p["steps"])
    z = z0.astype(np.float64)
    for j in range(1, len(g)):
        a, b = g[j - 1], g[j]
        t_eval = a if p["eps_at"] == "source" else b   # paper Eq. 3: source; released code: target
        eps = models.guided_eps(z, t_eval, y, p["guidance"])
        z = ddim_step(z, eps, ac, a, b)
    return z


def sample(models: Models, ac: np.ndarray, z_t: np.ndarray, y: np.ndarray, profile: str) -> np.ndarray:
    p = PROFILES[profile]
    g = grid(p["steps"])
    z = z_t.astype(np.float64)
    if profile == "paper":
        # back down the same grid: t_T -> t_{T-1} -> ... -> t_0, eps at the current step
        for j in range(len(g) - 1, 0, -1):
            eps = models.guided_eps(z, g[j], y, p["guidance"])
            z = ddim_step(z, eps, ac, g[j], g[j - 1])
    else:
        # authors' loop: eps at t = t_T + 20, t_T, ..., 20, 0; each step t -> max(1, t - 20)
        start = g[-1] + GRID_STRIDE
        for t in range(start, -1, -GRID_STRIDE):
            eps = models.guided_eps(z, t, y, p["guidance"])
            z = ddim_step(z, eps, ac, t, max(1, t - GRID_STRIDE))
    return z


# ---------------------------------------------------------------------------------------------
# statistics

def class_stats(z: np.ndarray) -> dict[str, np.ndarray]:
    """z: [N, D] float64 -> mean, population std, unbiased std, adjusted Fisher-Pearson skewness
    N/((N-1)(N-2)) * sum(((x - mean)/s)^3) with s the unbiased std (0 when N < 3 or constant)."""
    n = z.shape[0]
    mean = z.mean(axis=0)
    dev = z - mean
    m2 = (dev ** 2).sum(axis=0)
    std = np.sqrt(m2 / n)
    std_u = np.sqrt(m2 / (n - 1)) if n > 1 else np.zeros_like(mean)
    skew = np.zeros_like(mean)
    if n >= 3:
        ok = m2 > 0
        skew[ok] = n / ((n - 1) * (n - 2)) * ((dev[:, ok] / std_u[ok]) ** 3).sum(axis=0)
    return {"mean": mean, "std": std, "std_unbiased": std_u, "skewness": skew}


# ---------------------------------------------------------------------------------------------
# the two selection losses (float64), on latents z [n, D] with targets mu, sigma (and gamma)

def paper_loss(z, mu, sigma, gamma, lam) -> float:
    """Eq. 5-8, per dimension then summed: (mean z - mu)^2, (sqrt(mean (z-mu)^2) - sigma)^2,
    (n/((n-1)(n-2)) sum ((z-mu)/sigma)^3 - gamma)^2; L = l_mu*Lmu + l_sigma*Lsigma + l_gamma*Lgamma;
    the skewness term is dropped when n < 3. gamma=None means a zero target."""
    z = np.asarray(z, np.float64)
    mu = np.asarray(mu, np.float64)
    sigma = np.asarray(sigma, np.float64)
    n = z.shape[0]
    l_mu = ((z.mean(axis=0) - mu) ** 2).sum()
    l_sigma = ((np.sqrt(((z - mu) ** 2).mean(axis=0)) - sigma) ** 2).sum()
    total = lam[0] * l_mu + lam[1] * l_sigma
    if n >= 3:
        target = np.zeros_like(mu) if gamma is None else np.asarray(gamma, np.float64)
        skew = n / ((n - 1) * (n - 2)) * (((z - mu) / sigma) ** 3).sum(axis=0)
        total += lam[2] * ((skew - target) ** 2).sum()
    return float(total)


def reference_loss(z, mu, sigma, lam) -> float:
    """The released code's evaluate_distribution_batch: ||mean z - mu||_2 + ||std_unbiased z - sigma||_2
    + l_gamma * ||k||_2 with k_i = D/((D-1)(D-2)) sum_d u_id^3, u = z standardised per dimension by the
    subset's own mean and unbiased std. A dimension whose n values are all equal gets u = 0 (our
    convention; torch would give NaN)."""
    z = np.asarray(z, np.float64)
    mu = np.asarray(mu, np.float64)
    sigma = np.asarray(sigma, np.float64)
    n, d = z.shape
    m = z.mean(axis=0)
    s = z.std(axis=0, ddof=1)
    l_mu = np.linalg.norm(m - mu)
    l_sigma = np.linalg.norm(s - sigma)
    u = np.zeros_like(z)
    ok = s > 0
    u[:, ok] = (z[:, ok] - m[ok]) / s[ok]
    k = d / ((d - 1) * (d - 2)) * (u ** 3).sum(axis=1)
    l_gamma = np.linalg.norm(k)
    return float(lam[0] * l_mu + lam[1] * l_sigma + lam[2] * l_gamma)


# ---------------------------------------------------------------------------------------------
# end-to-end checks

class Report:
    def __init__(self):
        self.failures: list[str] = []

    def check(self, name: str, ok: bool, detail: str):
        line = f"{'PASS' if ok else 'FAIL'} {name}: {detail}"
        print(line, flush=True)
        if not ok:
            self.failures.append(line)


def run_cli(cli: str, args: list[str], env: dict) -> None:
    cmd = [cli] + args
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise Failure(f"command failed (exit {r.returncode}): {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")


def make_dataset(workdir: str, size: tuple[int, int]) -> tuple[str, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20250601)
    h, w = size
    labels = np.array([c for _ in range(PER_CLASS) for c in CLASSES], dtype=np.uint8)  # interleaved
    # smooth-ish random images: a random low-frequency pattern plus noise, clipped to uint8
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    imgs = []
    for i in range(len(labels)):
        a, b, c, ph = rng.uniform(-1, 1, 4)
        base = 127.5 + 90 * np.sin(2 * np.pi * (a * xx + b * yy) * 2 + ph) * c
        imgs.append(np.clip(base + rng.normal(0, 25, (h, w)), 0, 255).round())
    images = np.stack(imgs).astype(np.uint8)
    return write_idx(workdir, images, labels), images, labels


def check_invert(rep: Report, profile: str, stats_path: str, models: Models, ac, images, labels, mine):
    tensors, meta = read_safetensors(stats_path)
    info = json.loads(meta["d3hr"])
    names = json.loads(meta["class_names"])
    want_grid = grid(PROFILES[profile]["steps"])
    rep.check(f"{profile}/invert metadata", info["grid"] == want_grid
              and info["profile"] == profile and float(info["guidance"]) == PROFILES[profile]["guidance"]
              and info["posterior"] == "mean" and info.get("inversion_eps") == PROFILES[profile]["eps_at"]
              and list(tensors["class_ids"]) == list(CLASSES)
              and names == [str(c) for c in CLASSES] and list(tensors["count"]) == [PER_CLASS] * len(CLASSES),
              f"grid {info['grid'][0]}..{info['grid'][-1]} ({len(info['grid']) - 1} steps), guidance "
              f"{info['guidance']}, inversion_eps {info.get('inversion_eps')}, classes {tensors['class_ids'].tolist()}, counts {tensors['count'].tolist()}")
    d = int(np.prod(models.latent_shape))
    for k, c in enumerate(CLASSES):
        st = mine[c]
        errs = {}
        for name in ("mean", "std", "std_unbiased", "skewness"):
            errs[name] = rel_l2(tensors[name][k], st[name])
        ok = all(errs[n] <= TOL_STATS for n in ("mean", "std", "std_unbiased")) and errs["skewness"] <= TOL_SKEW
        rep.check(f"{profile}/invert class {c} stats",
                  ok and tensors["mean"].shape == (len(CLASSES), d),
                  "rel L2 " + ", ".join(f"{n} {e:.2e}" for n, e in errs.items())
                  + f" (tol {TOL_STATS:.0e}; skewness {TOL_SKEW:.0e})")
    return tensors, info


def check_sample(rep: Report, tag: str, profile: str, out: str, tensors, models: Models, ac,
                 expect_skew: str):
    man = json.load(open(os.path.join(out, "manifest.json")))
    sel = man["selection"]
    want_std = PROFILES[profile]["std"]
    rep.check(f"{tag} manifest", sel.get("std") == want_std and sel.get("skew_target") == expect_skew
              and int(sel["ipc"]) == IPC and int(sel["m"]) == M,
              f"selection.std {sel.get('std')} (want {want_std}), skew_target {sel.get('skew_target')} "
              f"(want {expect_skew}), loss {sel.get('loss')}, lambda {sel.get('lambda')}")
    lam = [float(v) for v in sel["lambda"]]
    want_lam = [1.0, 1.0, 0.5] if profile == "paper" else [1.0, 1.0, 0.1]
    if lam != want_lam:
        rep.check(f"{tag} lambda", False, f"manifest lambda {lam}, expected the profile's {want_lam}")
    std_name = "std" if want_std == "population" else "std_unbiased"
    shape = (IPC,) + models.latent_shape
    d = int(np.prod(models.latent_shape))
    by_id = {int(c["id"]): c for c in man["classes"]}
    for k, c in enumerate(CLASSES):
        entry = by_id[c]
        cdir = os.path.join(out, str(c))
        g = read_safetensors(os.path.join(cdir, "candidates.safetensors"))[0]["g"]
        if g.shape != (M, IPC, d) or g.dtype != np.float32:
            rep.check(f"{tag} class {c} candidates", False, f"g is {g.dtype} {g.shape}, want float32 {(M, IPC, d)}")
            continue
        mu = tensors["mean"][k].astype(np.float64)
        sigma = tensors[std_name][k].astype(np.float64)
        gamma = tensors["skewness"][k].astype(np.float64) if expect_skew == "data" else None
        z_all = mu + sigma * g.astype(np.float64)          # [m, n, d]
        if profile == "paper":
            losses = np.array([paper_loss(z, mu, sigma, gamma, lam) for z in z_all])
        else:
            losses = np.array([reference_loss(z, mu, sigma, lam) for z in z_all])
        best = int(np.argmin(losses))
        chosen = int(entry["candidate"])
        second = np.partition(losses, 1)[1]
        lerr = abs(losses[chosen] - float(entry["loss"])) / max(abs(losses[chosen]), TINY)
        rep.check(f"{tag} class {c} selection", best == chosen and lerr <= TOL_LOSS,
                  f"argmin {best} (CLI {chosen}), loss {losses[chosen]:.9g} vs CLI {float(entry['loss']):.9g} "
                  f"rel err {lerr:.2e}; runner-up gap {(second - losses[best]) / max(abs(losses[best]), TINY):.1e}")
        lat = read_safetensors(os.path.join(cdir, "latents.safetensors"))[0]
        z_t_cli, z_0_cli = lat["z_T"], lat["z_0"]
        if z_t_cli.shape != shape or z_0_cli.shape != shape:
            rep.check(f"{tag} class {c} latents", False, f"z_T {z_t_cli.shape}, z_0 {z_0_cli.shape}, want {shape}")
            continue
        e_t = rel_l2(z_t_cli.reshape(IPC, d), z_all[chosen])
        y = np.full(IPC, c, dtype=np.int64)
        z0 = sample(models, ac, z_t_cli.astype(np.float64), y, profile)
        e_0 = rel_l2(z_0_cli, z0)
        rep.check(f"{tag} class {c} latents", e_t <= TOL_ZT and e_0 <= TOL_Z0,
                  f"z_T rel L2 {e_t:.2e} (tol {TOL_ZT:.0e}), z_0 after DDIM sampling rel L2 {e_0:.2e} "
                  f"(tol {TOL_Z0:.0e})")


def sanity_vs_torch_reference(rep: Report, models: Models, ac):
    """Our schedule and DiT call against the PyTorch tensors committed in reference.safetensors."""
    ref, _ = read_safetensors(os.path.join(FIXTURES, "reference.safetensors"))
    e_ac = float(np.max(np.abs(ref["alphas_cumprod"] - ac)))
    # t differs per row: one row at a time
    eps = np.concatenate([models.eps(ref["dit.x"][i:i + 1], int(ref["dit.t"][i]), ref["dit.y"][i:i + 1])
                          for i in range(len(ref["dit.t"]))])
    e_eps = float(np.max(np.abs(eps - ref["dit.eps"])))
    rep.check("schedule and DiT vs PyTorch reference", e_ac <= 1e-12 and e_eps <= 1e-4,
              f"alphas_cumprod max abs {e_ac:.1e}, eps max abs {e_eps:.1e}")


def end_to_end(args) -> int:
    t0 = time.time()
    cli = os.path.abspath(args.cli)
    if not os.access(cli, os.X_OK):
        print(f"error: --cli {cli} is not an executable", file=sys.stderr)
        return 2
    work = args.work or tempfile.mkdtemp(prefix="d3hr-oracle-")
    if os.path.exists(work) and os.listdir(work):
        shutil.rmtree(work)
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("D3HR_PYTHON", sys.executable)   # lets the CLI find this venv's onnxruntime library

    models = Models(threads=args.threads)
    ac = alphas_cumprod()
    rep = Report()
    sanity_vs_torch_reference(rep, models, ac)

    size = models.image_shape[1:]
    data, images, labels = make_dataset(work, size)
    base = ["--onnx", models.dit_path, "--vae-encoder", models.enc_path, "--vae-decoder", models.dec_path,
            "--threads", str(args.threads), "--quiet"]
    z0_all = models.encode(images)                          # [N, C, H, W]
    d = int(np.prod(models.latent_shape))
    try:
        for profile in ("paper", "reference"):
            stats_path = os.path.join(work, f"stats_{profile}.safetensors")
            run_cli(cli, base + ["invert", "--data", data, "--profile", profile, "--posterior", "mean",
                                 "--seed", "0", "--out", stats_path], env)
            mine = {}
            for c in CLASSES:
                sel = labels == c
                z_t = invert(models, ac, z0_all[sel], labels[sel].astype(np.int64), profile)
                mine[c] = class_stats(z_t.reshape(-1, d))
            tensors, _ = check_invert(rep, profile, stats_path, models, ac, images, labels, mine)

            # --skew-target defaults to zero (it only matters for the paper loss)
            runs = [(f"{profile}/sample", "zero", [])]
            if profile == "paper":
                runs.append((f"{profile}/sample skew-target data", "data", ["--skew-target", "data"]))
            for tag, expect_skew, extra in runs:
                out = os.path.join(work, f"samples_{profile}" + ("_data" if extra else ""))
                run_cli(cli, base + ["sample", "--stats", stats_path, "--ipc", str(IPC), "--m", str(M),
                                     "--mode", "joint", "--seed", "1", "--save-candidates", "--save-latents",
                                     "--out", out] + extra, env)
                check_sample(rep, tag, profile, out, tensors, models, ac, expect_skew)
    except Failure as e:
        print(f"FAIL {e}", file=sys.stderr)
        return 1
    dt = time.time() - t0
    if rep.failures:
        print(f"oracle: {len(rep.failures)} check(s) FAILED ({dt:.1f} s); work dir {work}", file=sys.stderr)
        for f in rep.failures:
            print("  " + f, file=sys.stderr)
        return 1
    if not args.work and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
        print(f"oracle: all checks passed ({dt:.1f} s)")
    else:
        print(f"oracle: all checks passed ({dt:.1f} s); work dir {work}")
    return 0


# ---------------------------------------------------------------------------------------------
# known answers for core/tests/loss_known_answer.rs

KA_HEADER = """\
# Known answers for d3hr_core::select::score_normals, written by
#   target/py/bin/python tests/oracle/oracle.py --known-answers core/tests/data/loss_known_answers.txt
# (an independent numpy implementation of both losses; do not edit by hand).
#
# Format: one record per line, whitespace-separated tokens; lines starting with # are comments.
#   cases <N>                        number of case records that follow (first record)
#   case <name> loss <paper|reference> skew <zero|data> n <n> d <d> lambda <mu> <sigma> <gamma>
#   mu <d values>                    target mean (float32 values)
#   sigma <d values>                 target std (float32 values)
#   gamma <d values>                 stored skewness; the skewness target only when `skew data`
#                                    (paper loss); otherwise present but unused (pass skew: None)
#   g <n*d values>                   standard normals, row-major [n][d] (float32 values)
#   want <loss>                      the loss, 17 significant digits
# All inputs are float32-representable (shortest float32 repr); the loss was computed in float64
# on z = mu + sigma * g.
# paper:     sum_d [ l_mu (mean_i z - mu)^2 + l_sigma (sqrt(mean_i (z - mu)^2) - sigma)^2
#                    + l_gamma (n/((n-1)(n-2)) sum_i ((z - mu)/sigma)^3 - gamma_target)^2 ]
#            (gamma term dropped when n < 3; gamma_target = 0 for `skew zero`)
# reference: l_mu ||mean_i z - mu||_2 + l_sigma ||std_unbiased_i z - sigma||_2 + l_gamma ||k||_2,
#            k_i = D/((D-1)(D-2)) sum_d u_id^3, u = z standardised per dimension by the subset's
#            own mean and unbiased std.
# Case `reference_constant_dim`: one dimension's n values are all equal; its standardised values
# are taken as 0 (our implementation's convention; torch would give NaN).
"""


def f32s(a) -> str:
    """Shortest strings that parse back to the same float32 values."""
    return " ".join(np.format_float_scientific(np.float32(v), unique=True, trim="-") for v in np.ravel(a))


def known_answers(path: str) -> int:
    cases = []

    def add(name, loss, skew, n, d, lam, seed, constant_dim=None):
        rng = np.random.default_rng(seed)
        mu = rng.normal(0.0, 1.0, d).astype(np.float32)
        sigma = rng.uniform(0.3, 2.0, d).astype(np.float32)
        gamma = rng.normal(0.0, 0.7, d).astype(np.float32)
        g = rng.standard_normal((n, d)).astype(np.float32)
        if constant_dim is not None:
            g[:, constant_dim] = g[0, constant_dim]
        lam32 = [float(np.float32(v)) for v in lam]
        z = mu.astype(np.float64) + sigma.astype(np.float64) * g.astype(np.float64)
        if loss == "paper":
            want = paper_loss(z, mu, sigma, gamma if skew == "data" else None, lam32)
        else:
            want = reference_loss(z, mu, sigma, lam32)
        cases.append((name, loss, skew, n, d, lam32, mu, sigma, gamma, g, want))

    seed = 1000
    for skew in ("zero", "data"):
        for n in (1, 2, 3, 5):
            seed += 1
            add(f"paper_skew_{skew}_n{n}", "paper", skew, n, 6, (1.0, 1.0, 0.5), seed)
    add("paper_skew_data_n4_lambdas", "paper", "data", 4, 9, (0.25, 2.0, 1.5), 1100)
    add("paper_skew_zero_n7_d16", "paper", "zero", 7, 16, (1.0, 1.0, 0.5), 1101)
    for n in (2, 3, 5, 10):
        for d in (3, 4, 7, 16):
            seed += 1
            add(f"reference_n{n}_d{d}", "reference", "zero", n, d, (1.0, 1.0, 0.1), seed)
    add("reference_n4_d5_lambdas", "reference", "zero", 4, 5, (0.5, 2.0, 0.75), 1200)
    add("reference_constant_dim", "reference", "zero", 5, 6, (1.0, 1.0, 0.1), 1201, constant_dim=2)

    lines = [KA_HEADER.rstrip("\n"), f"cases {len(cases)}"]
    for name, loss, skew, n, d, lam, mu, sigma, gamma, g, want in cases:
        lines.append(f"case {name} loss {loss} skew {skew} n {n} d {d} lambda {lam[0]!r} {lam[1]!r} {lam[2]!r}")
        lines.append("mu " + f32s(mu))
        lines.append("sigma " + f32s(sigma))
        lines.append("gamma " + f32s(gamma))
        lines.append("g " + f32s(g))
        lines.append(f"want {want:.17g}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"known answers: {len(cases)} cases written to {path}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", help="path to the d3hr-cli binary")
    p.add_argument("--work", help="work directory (emptied first; kept afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    p.add_argument("--threads", type=int, default=2, help="threads for the CLI and onnxruntime")
    p.add_argument("--known-answers", metavar="PATH", help="write the loss known-answer file and exit")
    args = p.parse_args()
    if args.known_answers:
        return known_answers(args.known_answers)
    if not args.cli:
        p.error("--cli is required (or --known-answers PATH)")
    return end_to_end(args)


if __name__ == "__main__":
    sys.exit(main())
