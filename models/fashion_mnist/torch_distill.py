"""The D3HR pipeline as a plain PyTorch script: the speed baseline for `d3hr-cli distill`.

Same checkpoints the default ONNX graphs were exported from (``checkpoints/vae.pt``,
``checkpoints/dit_ema.pt``), same data and the same paper profile as ``d3hr-cli distill --ipc N``:

1. VAE-encode every training image (posterior mean, times the scaling factor);
2. DDIM-invert the latents with the class-conditional DiT over DiT's 50-step grid up to T = 31
   (t = 0, 20, ..., 620; guidance 1; the predictor at each step's source, Eq. 3);
3. per class and dimension: mean, population std (the skewness target is 0, as in the paper);
4. joint group sampling (paper Eq. 5-8, lambda = 1, 1, 0.5): m candidate subsets of IPC normals
   (numpy's generator, in chunks), keep the argmin;
5. DDIM-sample the winners back to t = 0, decode, write ``<out>/<class>/<k>.png`` (28x28).

This is the baseline a researcher would write: batched, vectorised numpy scoring, the library's
normal generator -- nothing deliberately slow. It prints and (``--json``) records the wall time of
each stage; the images are not meant to be bit-identical to the Rust tool's (different RNG).

Example (the comparison in the README):
    python models/fashion_mnist/torch_distill.py --ipc 10 --threads 2 --out runs/torch_ipc10 \
        --json results/speed_torch.json
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image

from d3hr_models.data import DEFAULT_DATA_DIR, crop, load_split, to_model_range
from d3hr_models.diffusion import alphas_cumprod, ddim_invert, ddim_sample
from d3hr_models.dit import load_dit
from d3hr_models.machine import machine_info
from d3hr_models.vae import load_vae

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA_DIR, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--vae", default=os.path.join(HERE, "checkpoints", "vae.pt"))
    p.add_argument("--dit", default=os.path.join(HERE, "checkpoints", "dit_ema.pt"))
    p.add_argument("--ipc", type=int, required=True, help="images per class")
    p.add_argument("--m", type=int, default=100_000, help="candidate subsets (joint group sampling)")
    p.add_argument("--steps", type=int, default=31, help="inversion steps on the 50-step grid")
    p.add_argument("--limit-per-class", type=int, default=0, help="use the first N images per class (0 = all)")
    p.add_argument("--batch", type=int, default=64, help="images per model call")
    p.add_argument("--chunk", type=int, default=1000, help="candidates scored per numpy call")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder for <class>/<k>.png")
    p.add_argument("--json", help="write the per-stage wall times here")
    return p.parse_args()


def group_sampling(mu: np.ndarray, sigma: np.ndarray, gamma: np.ndarray, n: int, m: int, chunk: int,
                   rng: np.random.Generator, lambdas=(1.0, 1.0, 0.5)) -> np.ndarray:
    """Paper Eq. 5-8 over m candidates of n latents; returns the winning subset [n, d]."""
    d = mu.shape[0]
    var = (sigma.astype(np.float64)) ** 2
    c = n / ((n - 1) * (n - 2)) if n >= 3 else 0.0
    lg = lambdas[2] if n >= 3 else 0.0
    best_loss, best_g = np.inf, None
    for start in range(0, m, chunk):
        k = min(chunk, m - start)
        g = rng.standard_normal((k, n, d), dtype=np.float32)
        mean_g = g.mean(axis=1)
        rms_g = np.sqrt((g * g).mean(axis=1))
        skew = c * (g * g * g).sum(axis=1) - gamma
        loss = (var * (lambdas[0] * mean_g ** 2 + lambdas[1] * (rms_g - 1.0) ** 2)).sum(axis=1) \
            + lg * (skew.astype(np.float64) ** 2).sum(axis=1)
        i = int(np.argmin(loss))
        if loss[i] < best_loss:
            best_loss, best_g = float(loss[i]), g[i].copy()
    return mu + sigma * best_g


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    times: dict[str, float] = {}
    t0 = time.time()

    vae = load_vae(args.vae).eval()
    dit = load_dit(args.dit).eval()
    s = float(vae.scaling_factor)
    images, labels = load_split(args.data, "train")
    classes = sorted(set(int(c) for c in labels))
    if args.limit_per_class:
        keep = np.concatenate([np.flatnonzero(labels == c)[: args.limit_per_class] for c in classes])
        images, labels = images[np.sort(keep)], labels[np.sort(keep)]
    times["load"] = time.time() - t0

    ac = alphas_cumprod()
    grid = [20 * i for i in range(args.steps + 1)]

    def eps_fn(z, t, y):
        return dit(z, t, y)

    t_encode = t_invert = 0.0
    stats = {}
    with torch.inference_mode():
        for c in classes:
            idx = np.flatnonzero(labels == c)
            zs = []
            for b in range(0, len(idx), args.batch):
                t1 = time.time()
                x = to_model_range(images[idx[b:b + args.batch]])
                z0 = vae.encode(x)[0] * s
                t2 = time.time()
                y = torch.full((z0.shape[0],), c, dtype=torch.int64)
                zs.append(ddim_invert(eps_fn, z0, y, grid, ac, eps_at="source").flatten(1).double())
                t3 = time.time()
                t_encode += t2 - t1
                t_invert += t3 - t2
            z = torch.cat(zs)
            mean = z.mean(0)
            dev = z - mean
            m2, m3 = (dev ** 2).mean(0), (dev ** 3).mean(0)
            n = z.shape[0]
            g1 = m3 / m2.clamp_min(1e-300) ** 1.5
            skew = g1 * np.sqrt(n * (n - 1)) / (n - 2)
            stats[c] = (mean.float().numpy(), m2.sqrt().float().numpy(), skew.float().numpy())
    times["encode"] = t_encode
    times["invert"] = t_invert
    times["n_images"] = int(len(labels))

    t1 = time.time()
    # The paper's skewness target: gamma = 0 ("as Gaussian distribution is perfectly symmetric").
    chosen = {c: group_sampling(mu, sigma, np.zeros_like(mu), n=args.ipc, m=args.m, chunk=args.chunk, rng=rng)
              for c, (mu, sigma, _) in stats.items()}
    times["select"] = time.time() - t1

    t1 = time.time()
    shape = (4, 8, 8)
    t_decode = 0.0
    with torch.inference_mode():
        for c in classes:
            zt = torch.from_numpy(chosen[c]).view(-1, *shape)
            y = torch.full((zt.shape[0],), c, dtype=torch.int64)
            z0 = ddim_sample(eps_fn, zt, y, grid, ac)
            t2 = time.time()
            x = crop(vae.decode(z0 / s)).clamp(-1, 1)
            u8 = ((x[:, 0] + 1) * 127.5).round().to(torch.uint8).numpy()
            os.makedirs(os.path.join(args.out, str(c)), exist_ok=True)
            for k, img in enumerate(u8):
                Image.fromarray(img, mode="L").save(os.path.join(args.out, str(c), f"{k}.png"))
            t_decode += time.time() - t2
    times["sample"] = time.time() - t1 - t_decode
    times["decode_write"] = t_decode
    times["total"] = time.time() - t0
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    print(json.dumps({"times_s": times, "settings": settings}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"times_s": times, "settings": settings, "machine": machine_info(), "torch": torch.__version__},
                      f, indent=1)


if __name__ == "__main__":
    main()
