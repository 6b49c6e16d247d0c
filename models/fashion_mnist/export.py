"""Export the trained Fashion-MNIST models to ONNX and check each graph against PyTorch.

Writes to --out-dir (default models/fashion_mnist/onnx/):
  dit.onnx          x [B,4,8,8] float32 (scaled latent z_t), t [B] int64 (DDPM step index 0..999),
                    y [B] int64 (class 0..9, or 10 = null class)  ->  eps [B,4,8,8] float32
  vae_encoder.onnx  image [B,1,32,32] float32 in [-1,1]  ->  mean [B,4,8,8], logvar [B,4,8,8] (unscaled)
  vae_decoder.onnx  latent [B,4,8,8] float32 (unscaled, i.e. z0 / scaling_factor)  ->  image [B,1,32,32]
The batch dimension is dynamic. Opset --opset (17), IR version capped at 9; metadata_props carry the
latent shape, classes, null class, timestep meaning, scaling factor, image size and padding.
Each graph is run with onnxruntime on random inputs (batch 1 and 5) and compared with PyTorch;
the script fails if the max abs difference exceeds --tol.

Example:
    python models/fashion_mnist/export.py
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from torch import nn

from d3hr_fashion_mnist._common import CHECKPOINT_DIR, ONNX_DIR, log, set_threads
from d3hr_models.data import IMAGE_SIZE, PAD, RAW_SIZE
from d3hr_models.diffusion import BETA_END, BETA_START, NUM_TRAIN_TIMESTEPS
from d3hr_models.dit import EpsOnly, load_dit
from d3hr_models.onnx_export import (
    DEC_INPUTS,
    DEC_OUTPUTS,
    DIT_INPUTS,
    DIT_OUTPUTS,
    ENC_INPUTS,
    ENC_OUTPUTS,
    export_graph,
    finalize,
    max_abs_err,
    ort_session,
    torch_outputs,
)
from d3hr_models.vae import load_vae


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dit", default=os.path.join(CHECKPOINT_DIR, "dit_ema.pt"), help="DiT checkpoint (EMA weights)")
    p.add_argument("--vae", default=os.path.join(CHECKPOINT_DIR, "vae.pt"), help="VAE checkpoint")
    p.add_argument("--out-dir", default=ONNX_DIR, help="output folder for the .onnx files")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    p.add_argument("--tol", type=float, default=1e-4, help="max abs error allowed between ORT and PyTorch")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    return p.parse_args()


class VAEEncoderGraph(nn.Module):
    def __init__(self, vae: nn.Module):
        super().__init__()
        self.encoder = vae.encoder

    def forward(self, image: torch.Tensor):
        return self.encoder(image)


def verify(path: str, torch_fn, inputs: dict[str, np.ndarray], tol: float) -> float:
    """Max abs difference between onnxruntime (CPU) and PyTorch on ``inputs``; exits above ``tol``."""
    err = max_abs_err(ort_session(path).run(None, inputs), torch_outputs(torch_fn, inputs))
    if not err <= tol:
        raise SystemExit(f"{path}: max abs error {err:.3e} > {tol:.1e}")
    return err


def main() -> None:
    args = parse_args()
    set_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    vae = load_vae(args.vae)
    dit = load_dit(args.dit)
    cfg = dit.cfg
    s = float(vae.scaling_factor)
    c, h = cfg.in_channels, cfg.input_size
    common = {
        "latent_shape": f"{c},{h},{h}",
        "num_classes": str(cfg.num_classes),
        "null_class": str(cfg.null_class),
        "scaling_factor": f"{s:.8g}",
        "image_shape": f"1,{IMAGE_SIZE},{IMAGE_SIZE}",
        "image_range": "[-1, 1] (pixel/127.5 - 1); decoder output is not clamped",
        "padding": f"Fashion-MNIST {RAW_SIZE}x{RAW_SIZE} padded by {PAD} px on each side with -1 to "
                   f"{IMAGE_SIZE}x{IMAGE_SIZE}; crop [{PAD}:{PAD + RAW_SIZE}, {PAD}:{PAD + RAW_SIZE}] to undo",
        "dataset": "Fashion-MNIST",
        "producer_script": "models/fashion_mnist/export.py",
    }
    rng = np.random.default_rng(0)

    # --- DiT ---
    path = os.path.join(args.out_dir, "dit.onnx")
    wrapper = EpsOnly(dit).eval()
    ex = (torch.randn(2, c, h, h), torch.tensor([10, 500]), torch.tensor([1, cfg.null_class]))
    export_graph(wrapper, ex, path, DIT_INPUTS, DIT_OUTPUTS, args.opset)
    finalize(path, {**common,
                    "model": "DiT (class-conditional, adaLN-Zero), epsilon channels only",
                    "dit_config": str(cfg.to_dict()),
                    "input_x": "scaled latent z_t = scaling_factor * VAE mean, noised to step t",
                    "timestep": f"integer DDPM step index 0..{NUM_TRAIN_TIMESTEPS - 1} (int64), linear beta "
                                f"{BETA_START:g}..{BETA_END:g}, {NUM_TRAIN_TIMESTEPS} steps",
                    "prediction": "epsilon",
                    "beta_schedule": "linear", "beta_start": f"{BETA_START:g}", "beta_end": f"{BETA_END:g}",
                    "num_train_timesteps": str(NUM_TRAIN_TIMESTEPS)})
    errs = []
    for b in (1, 5):
        inputs = {"x": rng.standard_normal((b, c, h, h)).astype(np.float32),
                  "t": rng.integers(0, NUM_TRAIN_TIMESTEPS, b).astype(np.int64),
                  "y": rng.integers(0, cfg.num_classes + 1, b).astype(np.int64)}
        errs.append(verify(path, wrapper, inputs, args.tol))
    log(f"{path}: ok, max abs err {max(errs):.2e}")

    # --- VAE encoder ---
    path = os.path.join(args.out_dir, "vae_encoder.onnx")
    enc = VAEEncoderGraph(vae).eval()
    export_graph(enc, (torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1,), path, ENC_INPUTS, ENC_OUTPUTS, args.opset)
    finalize(path, {**common, "model": "KL-VAE encoder; outputs the posterior mean and log-variance, unscaled "
                                       "(multiply the mean by scaling_factor for the DiT)"})
    errs = [verify(path, enc, {"image": (rng.random((b, 1, IMAGE_SIZE, IMAGE_SIZE)) * 2 - 1).astype(np.float32)},
                   args.tol) for b in (1, 5)]
    log(f"{path}: ok, max abs err {max(errs):.2e}")

    # --- VAE decoder ---
    path = os.path.join(args.out_dir, "vae_decoder.onnx")
    dec = vae.decoder.eval()
    export_graph(dec, (torch.randn(2, c, h, h) / s,), path, DEC_INPUTS, DEC_OUTPUTS, args.opset)
    finalize(path, {**common, "model": "KL-VAE decoder; input is the unscaled latent (z0 / scaling_factor); "
                                       "output image in about [-1, 1] (clamp, then (x + 1) / 2)"})
    errs = [verify(path, dec, {"latent": (rng.standard_normal((b, c, h, h)) / s).astype(np.float32)}, args.tol)
            for b in (1, 5)]
    log(f"{path}: ok, max abs err {max(errs):.2e}")


if __name__ == "__main__":
    main()
