"""Export a diffusers AutoencoderKL (e.g. stabilityai/sd-vae-ft-ema) to the two ONNX graphs of the
``runtime-ort`` contract.

  <out-dir>/vae_encoder.onnx  image f32 [B,Cimg,S,S] in [-1, 1]  ->  mean, logvar f32 [B,C,S/8,S/8]
                              (posterior of encoder + quant_conv, unscaled; logvar clamped to [-30, 20]
                              exactly as diffusers' DiagonalGaussianDistribution does)
  <out-dir>/vae_decoder.onnx  latent f32 [B,C,S/8,S/8], unscaled (= z / scaling_factor)  ->  image f32
                              [B,Cimg,S,S] in about [-1, 1] (not clamped)

The batch axis is dynamic ("batch"); the image size is fixed by --image-size (default 256, the DiT's).
metadata_props: latent_shape "C,h,w", image_shape "Cimg,S,S", scaling_factor (from the VAE config,
0.18215 for the SD VAEs), shift_factor when the config has one, model, producer_script.
Opset 17, IR version <= 9, ONNX full checker.

Sources: --vae FOLDER (a local diffusers AutoencoderKL folder with config.json and
diffusion_pytorch_model.safetensors|.bin, or a pipeline folder with a vae/ sub-folder; nothing is
downloaded), or --tiny (a small random AutoencoderKL: 3-channel images, 4 levels so that the latent is
image-size / 8, for tests). --check compares onnxruntime with diffusers' own vae.encode(...).latent_dist
and vae.decode(...) on random inputs (batch 1 and 2).

Examples:
    python models/export_vae.py --vae ~/hf/sd-vae-ft-ema --out-dir models/work/onnx --check
    python models/export_vae.py --tiny --image-size 64 --out-dir models/work/test/vae_tiny --check
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch
from torch import nn

from d3hr_models.onnx_export import (
    DEC_INPUTS,
    DEC_OUTPUTS,
    DEFAULT_OPSET,
    ENC_INPUTS,
    ENC_OUTPUTS,
    check_io,
    export_graph,
    finalize,
    max_abs_err,
    ort_session,
)

HERE = os.path.dirname(os.path.abspath(__file__))

SCRIPT = "models/export_vae.py"


class EncoderGraph(nn.Module):
    """image -> (mean, logvar) of the posterior: encoder, quant_conv, chunk, clamp (diffusers' semantics)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.vae.encoder(image)
        if getattr(self.vae, "quant_conv", None) is not None:
            h = self.vae.quant_conv(h)
        mean, logvar = torch.chunk(h, 2, dim=1)
        return mean, torch.clamp(logvar, -30.0, 20.0)


class DecoderGraph(nn.Module):
    """unscaled latent -> image: post_quant_conv, decoder."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        if getattr(self.vae, "post_quant_conv", None) is not None:
            latent = self.vae.post_quant_conv(latent)
        return self.vae.decoder(latent)


def tiny_vae(seed: int):
    """A small random AutoencoderKL: 3 -> 4 channels, 4 levels (8x down-sampling) like the SD VAE."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4,
                        sample_size=64, scaling_factor=0.18215)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # GroupNorm affine ~ 1 + N, 0 + N; biases ~ N (the defaults are 1 / 0)
        for m in vae.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
    return vae


def load_vae(folder: str):
    from diffusers import AutoencoderKL

    sub = os.path.join(folder, "vae")
    if os.path.isfile(os.path.join(sub, "config.json")):
        folder = sub
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise SystemExit(f"{folder}: no config.json (expected a diffusers AutoencoderKL folder)")
    return AutoencoderKL.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--vae", help="local diffusers AutoencoderKL folder (or a pipeline folder with vae/)")
    src.add_argument("--tiny", action="store_true", help="small random AutoencoderKL (3-channel, for tests)")
    p.add_argument("--out-dir", required=True, help="folder for vae_encoder.onnx and vae_decoder.onnx")
    p.add_argument("--prefix", default="vae", help="file name prefix (default vae -> vae_encoder.onnx)")
    p.add_argument("--image-size", type=int, default=256,
                   help="image side S in pixels, a multiple of the VAE's down-sampling factor (default 256)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default 17)")
    p.add_argument("--seed", type=int, default=0, help="seed for --tiny weights and --check inputs (default 0)")
    p.add_argument("--check", action="store_true", help="compare onnxruntime with diffusers on random inputs")
    p.add_argument("--tol", type=float, default=1e-4, help="max abs error allowed by --check (default 1e-4)")
    p.add_argument("--threads", type=int, default=1, help="torch / onnxruntime CPU threads (default 1)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    vae = (tiny_vae(args.seed) if args.tiny else load_vae(args.vae)).float().eval()
    cfg = vae.config
    down = 2 ** (len(cfg.block_out_channels) - 1)
    s = args.image_size
    if s % down:
        raise SystemExit(f"--image-size {s} is not a multiple of the down-sampling factor {down}")
    c_img, c_lat, h = int(cfg.in_channels), int(cfg.latent_channels), s // down
    scaling = float(cfg.scaling_factor)
    name = "tiny random AutoencoderKL" if args.tiny else f"AutoencoderKL {os.path.basename(os.path.normpath(args.vae))}"
    meta = {
        "producer_script": SCRIPT,
        "latent_shape": f"{c_lat},{h},{h}",
        "image_shape": f"{c_img},{s},{s}",
        "scaling_factor": f"{scaling:.8g}",
        "image_range": "[-1, 1] (pixel / 127.5 - 1); decoder output not clamped",
        "vae_config": json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(cfg).items()
                                  if not k.startswith("_")}, default=str),
    }
    if getattr(cfg, "shift_factor", None) is not None:
        meta["shift_factor"] = f"{float(cfg.shift_factor):.8g}"
        print(f"warning: this VAE has shift_factor {cfg.shift_factor}; the runtime scales by scaling_factor only")
    os.makedirs(args.out_dir, exist_ok=True)
    enc_path = os.path.join(args.out_dir, f"{args.prefix}_encoder.onnx")
    dec_path = os.path.join(args.out_dir, f"{args.prefix}_decoder.onnx")
    enc, dec = EncoderGraph(vae).eval(), DecoderGraph(vae).eval()
    export_graph(enc, (torch.rand(2, c_img, s, s) * 2 - 1,), enc_path, ENC_INPUTS, ENC_OUTPUTS, args.opset)
    info = finalize(enc_path, {**meta, "model": f"{name} encoder: posterior mean and log-variance, unscaled "
                                                f"(z0 = scaling_factor * mean)"})
    check_io(enc_path, ENC_INPUTS, ENC_OUTPUTS)
    print(f"wrote {enc_path}: {info['bytes'] / 2**20:.2f} MiB")
    export_graph(dec, (torch.randn(2, c_lat, h, h) / scaling,), dec_path, DEC_INPUTS, DEC_OUTPUTS, args.opset)
    info = finalize(dec_path, {**meta, "model": f"{name} decoder: input unscaled latent (z0 / scaling_factor), "
                                                f"output image in about [-1, 1]"})
    check_io(dec_path, DEC_INPUTS, DEC_OUTPUTS)
    print(f"wrote {dec_path}: {info['bytes'] / 2**20:.2f} MiB")

    if args.check:
        rng = np.random.default_rng(args.seed)
        enc_sess, dec_sess = ort_session(enc_path, args.threads), ort_session(dec_path, args.threads)
        worst = 0.0
        for b in (1, 2):
            image = (rng.random((b, c_img, s, s)) * 2 - 1).astype(np.float32)
            latent = (rng.standard_normal((b, c_lat, h, h)) / scaling).astype(np.float32)
            with torch.no_grad():  # diffusers' public API as the reference, not our wrappers
                post = vae.encode(torch.from_numpy(image)).latent_dist
                want_enc = [post.mean.numpy(), post.logvar.numpy()]
                want_dec = [vae.decode(torch.from_numpy(latent)).sample.numpy()]
            e1 = max_abs_err(enc_sess.run(None, {"image": image}), want_enc)
            e2 = max_abs_err(dec_sess.run(None, {"latent": latent}), want_dec)
            print(f"check batch {b}: encoder max abs err {e1:.3e} (|mean| max {np.abs(want_enc[0]).max():.3f}), "
                  f"decoder max abs err {e2:.3e} (|image| max {np.abs(want_dec[0]).max():.3f})")
            worst = max(worst, e1, e2)
        if not worst <= args.tol:
            raise SystemExit(f"onnxruntime differs from diffusers by {worst:.3e} > {args.tol:.1e}")
        print(f"check passed (tol {args.tol:.0e})")


if __name__ == "__main__":
    main()
