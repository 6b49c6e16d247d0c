"""Measure the trained DiT: (1) class fidelity of DDIM samples, (2) DDIM inversion round-trip error.

(1) For each guidance scale in --scales: draw --per-class noise latents per class, run --sample-steps
    DDIM steps (eta = 0) from t = 999 to t = 0 on the grid round(linspace(0, 999, steps + 1)),
    decode with the VAE (latent / scaling_factor), and report the accuracy of the ConvNet-3 teacher
    (d3hr_eval.train_teacher) on the decoded images, overall and per class. For reference the teacher's
    accuracy on VAE reconstructions of real test images is reported too.
(2) Take --roundtrip-n real test latents, DDIM-invert them over --invert-steps steps (t = 0 -> 999,
    predictor evaluated at the target step, as in docs/ALGORITHM.md), then DDIM-sample back over the
    same grid, and report the relative L2 error ||z0' - z0|| / ||z0|| (mean over latents) and the MSE,
    plus the PSNR of the decoded round trip against the decoded original.

With --onnx GRAPH the DiT's ε comes from that ONNX graph under onnxruntime (CPU) instead of the
PyTorch checkpoint -- e.g. the int8 graph of quantize_dit.py; the VAE and the teacher stay PyTorch.

Writes a JSON summary to --out-json and a PNG grid per guidance scale to --out-dir (if --grid 1).

Example:
    python models/fashion_mnist/eval_dit.py --scales 1,2,4
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from d3hr_fashion_mnist._common import CHECKPOINT_DIR, WORK_DIR, log, seed_everything, set_threads
from d3hr_models.data import DEFAULT_DATA_DIR, load_tensors
from d3hr_models.diffusion import alphas_cumprod, ddim_invert, ddim_sample, timestep_grid
from d3hr_models.dit import guided_eps, load_dit
from d3hr_models.onnx_export import ort_session
from d3hr_models.vae import load_vae, psnr


def load_teacher(path: str):
    """The ConvNet-3 teacher from its checkpoint file alone (``{'config', 'state_dict'}`` as written by
    ``d3hr_eval.train_teacher``), without importing eval/: depth x [3x3 conv, instance norm (GroupNorm,
    one group per channel), ReLU, 2x2 average pool], then a linear layer. Returns logits = f(x)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    depth, sd = ckpt["config"]["depth"], ckpt["state_dict"]

    @torch.no_grad()
    def forward(x: torch.Tensor) -> torch.Tensor:
        for i in range(depth):
            conv, norm = f"features.{4 * i}", f"features.{4 * i + 1}"
            x = F.conv2d(x, sd[conv + ".weight"], sd[conv + ".bias"], padding=1)
            x = F.group_norm(x, x.shape[1], sd[norm + ".weight"], sd[norm + ".bias"])
            x = F.avg_pool2d(F.relu(x), 2)
        return F.linear(x.flatten(1), sd["classifier.weight"], sd["classifier.bias"])

    return forward


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA_DIR, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--dit", default=os.path.join(CHECKPOINT_DIR, "dit_ema.pt"), help="DiT checkpoint (EMA)")
    p.add_argument("--onnx", default="", help="evaluate this DiT graph (onnxruntime, CPU) instead of --dit")
    p.add_argument("--vae", default=os.path.join(CHECKPOINT_DIR, "vae.pt"), help="VAE checkpoint")
    p.add_argument("--teacher", default=os.path.join(CHECKPOINT_DIR, "teacher_convnet3.pt"),
                   help="ConvNet-3 teacher checkpoint")
    p.add_argument("--scales", default="1,2,4", help="comma-separated classifier-free guidance scales")
    p.add_argument("--per-class", type=int, default=100, help="samples per class for the accuracy")
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps for sampling from noise")
    p.add_argument("--invert-steps", type=int, default=31, help="DDIM steps for the inversion round trip")
    p.add_argument("--inversion-eps", choices=("source", "target"), default="source",
                   help="where each inversion step evaluates the predictor (paper Eq. 3: source)")
    p.add_argument("--roundtrip-n", type=int, default=300, help="number of real test latents for the round trip")
    p.add_argument("--roundtrip-scale", type=float, default=1.0, help="guidance scale used in the round trip")
    p.add_argument("--ref-n", type=int, default=2000,
                   help="test images (first N) for the teacher accuracy on real / VAE-reconstructed images")
    p.add_argument("--batch", type=int, default=500, help="batch size for the DiT calls")
    p.add_argument("--out-json", default=os.path.join(WORK_DIR, "eval_dit.json"), help="summary JSON")
    p.add_argument("--out-dir", default=os.path.join(WORK_DIR, "samples"), help="folder for sample grids")
    p.add_argument("--grid", type=int, default=1, help="1 = write a PNG grid (10 per class) per scale")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    return p.parse_args()


class OnnxDiT:
    """ε of an exported DiT graph (inputs x, t, y; output ε), with the checkpoint's guidance rule."""

    def __init__(self, path: str, threads: int, null_class: int):
        self.sess = ort_session(path, threads)
        self.null_class = null_class

    def eps(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.sess.run(None, {"x": x.numpy().astype(np.float32), "t": t.numpy().astype(np.int64),
                                   "y": y.numpy().astype(np.int64)})[0]
        return torch.from_numpy(out)

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
        return guided_eps(self.eps, x, t, y, scale, self.null_class)


def write_grid(img: torch.Tensor, path: str, rows: int) -> None:
    """img [N, 1, H, W] in [-1, 1] -> an 8-bit grayscale PNG with ``rows`` rows (numpy + zlib only)."""
    import struct
    import zlib
    n, _, h, w = img.shape
    cols = n // rows
    a = ((img[: rows * cols, 0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    a = a.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)
    raw = b"".join(b"\x00" + a[r].tobytes() for r in range(a.shape[0]))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", a.shape[1], a.shape[0], 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


@torch.no_grad()
def main() -> None:
    args = parse_args()
    set_threads(args.threads)
    seed_everything(args.seed)
    dit = load_dit(args.dit)
    net = OnnxDiT(args.onnx, args.threads, dit.cfg.null_class) if args.onnx else dit
    vae = load_vae(args.vae)
    teacher = load_teacher(args.teacher)
    s = float(vae.scaling_factor)
    ac = alphas_cumprod()
    nc = dit.cfg.num_classes
    summary: dict = {"dit": args.onnx or args.dit, "sample_steps": args.sample_steps, "per_class": args.per_class,
                     "scaling_factor": s, "sampling": {}}
    os.makedirs(args.out_dir, exist_ok=True)

    def decode(zs: torch.Tensor) -> torch.Tensor:
        return torch.cat([vae.decode(zs[i:i + 1000] / s) for i in range(0, len(zs), 1000)]).clamp(-1, 1)

    def classify(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([teacher(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])

    # teacher on VAE reconstructions of real test images (upper reference for decoded samples)
    x_test, y_test = load_tensors(args.data, "test")
    z_test = torch.cat([vae.encode(x_test[i:i + 1000])[0] for i in range(0, len(x_test), 1000)]) * s
    r = args.ref_n
    summary["ref_n"] = r
    summary["teacher_acc_real_test"] = (classify(x_test[:r]) == y_test[:r]).float().mean().item()
    summary["teacher_acc_vae_recon_test"] = (classify(decode(z_test[:r])) == y_test[:r]).float().mean().item()
    log(f"teacher acc on the first {r} test images: real {summary['teacher_acc_real_test']:.4f}, "
        f"VAE reconstructions {summary['teacher_acc_vae_recon_test']:.4f}")

    grid = timestep_grid(args.sample_steps)
    y = torch.arange(nc).repeat_interleave(args.per_class)
    gen = torch.Generator().manual_seed(args.seed)
    noise = torch.randn((len(y), dit.cfg.in_channels, dit.cfg.input_size, dit.cfg.input_size), generator=gen)
    for scale in [float(v) for v in args.scales.split(",")]:
        t0 = time.time()

        def eps_fn(z, t, c, scale=scale):
            return net.forward_with_cfg(z, t, c, scale)

        z0 = torch.cat([ddim_sample(eps_fn, noise[i:i + args.batch], y[i:i + args.batch], grid, ac)
                        for i in range(0, len(y), args.batch)])
        img = decode(z0)
        pred = classify(img)
        acc = (pred == y).float().mean().item()
        per = [(pred[y == c] == c).float().mean().item() for c in range(nc)]
        summary["sampling"][str(scale)] = {"teacher_acc": acc, "per_class": per,
                                           "latent_std": z0.std().item(), "seconds": time.time() - t0}
        log(f"guidance {scale}: teacher accuracy {acc:.4f} per class {[round(v, 2) for v in per]} "
            f"({time.time() - t0:.0f} s)")
        if args.grid:
            k = min(10, args.per_class)
            pick = torch.cat([torch.arange(c * args.per_class, c * args.per_class + k) for c in range(nc)])
            write_grid(img[pick], os.path.join(args.out_dir, f"samples_w{scale:g}.png"), rows=nc)

    # inversion round trip on real test latents (stratified over classes)
    n = args.roundtrip_n
    idx = torch.cat([torch.nonzero(y_test == c).flatten()[: (n + nc - 1) // nc] for c in range(nc)])[:n]
    z_real, y_real = z_test[idx], y_test[idx]
    igrid = timestep_grid(args.invert_steps)

    def eps_rt(z, t, c):
        return net.forward_with_cfg(z, t, c, args.roundtrip_scale)

    t0 = time.time()
    z_T = ddim_invert(eps_rt, z_real, y_real, igrid, ac, eps_at=args.inversion_eps)
    z_back = ddim_sample(eps_rt, z_T, y_real, igrid, ac)
    rel = ((z_back - z_real).flatten(1).norm(dim=1) / z_real.flatten(1).norm(dim=1))
    mse = (z_back - z_real).pow(2).mean().item()
    img_psnr = psnr(decode(z_back), decode(z_real), 2.0).mean().item()
    summary["roundtrip"] = {
        "n": len(idx), "steps": args.invert_steps, "guidance": args.roundtrip_scale, "grid": igrid,
        "rel_l2_mean": rel.mean().item(), "rel_l2_median": rel.median().item(), "rel_l2_max": rel.max().item(),
        "latent_mse": mse, "latent_var": z_real.var().item(), "decoded_psnr_db": img_psnr,
        "z_T_mean": z_T.mean().item(), "z_T_std": z_T.std().item(), "seconds": time.time() - t0,
    }
    log(f"round trip ({args.invert_steps}+{args.invert_steps} DDIM steps, n={len(idx)}): rel L2 mean "
        f"{rel.mean():.4f} median {rel.median():.4f} max {rel.max():.4f}; latent MSE {mse:.5f} "
        f"(latent var {z_real.var():.3f}); decoded PSNR {img_psnr:.2f} dB; z_T std {z_T.std():.3f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out_json)), exist_ok=True)
    with open(args.out_json, "w") as f:
        json.dump(summary, f, indent=1)
    log(f"wrote {args.out_json}")


if __name__ == "__main__":
    main()
