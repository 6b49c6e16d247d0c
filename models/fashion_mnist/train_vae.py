"""Train the small KL-VAE (1x32x32 <-> 4x8x8) on Fashion-MNIST and report the test PSNR.

Example (the command used for the committed checkpoint is in MODEL_CARD.md):
    python models/fashion_mnist/train_vae.py --minutes 17

The learning rate follows a cosine decay over the run's progress, where progress is the larger of
step / --max-steps and elapsed / --minutes; with --minutes 0 the run is fully step-determined
(reproducible for a fixed seed and thread count).
At the end the latent scaling factor s = 1 / std(posterior means over the training set) is computed
and stored in the checkpoint (buffer ``scaling_factor``).
"""
from __future__ import annotations

import argparse
import math
import os

import torch

from d3hr_fashion_mnist._common import CHECKPOINT_DIR, Timer, log, seed_everything, set_threads
from d3hr_models.data import DEFAULT_DATA_DIR, crop, load_tensors
from d3hr_models.vae import KLVAE, VAEConfig, psnr


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA_DIR,
                   help="folder with the Fashion-MNIST IDX files (train-/t10k-images-idx3-ubyte[.gz], ...)")
    p.add_argument("--out", default=os.path.join(CHECKPOINT_DIR, "vae.pt"), help="checkpoint to write")
    p.add_argument("--minutes", type=float, default=17.0, help="wall-clock training budget; 0 = no limit")
    p.add_argument("--max-steps", type=int, default=20000, help="maximum optimizer steps")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    p.add_argument("--warmup", type=int, default=200, help="linear warm-up steps")
    p.add_argument("--kl-weight", type=float, default=1e-6, help="weight of the KL term (per image, summed dims)")
    p.add_argument("--base-channels", type=int, default=16, help="width of the first level")
    p.add_argument("--ch-mult", type=str, default="1,2,4",
                   help="comma-separated width multipliers per level (each level after the first halves H, W)")
    p.add_argument("--unshuffle", type=int, default=1, help="pixel_unshuffle factor applied before the convs")
    p.add_argument("--bf16", type=int, default=0,
                   help="1 = bf16 autocast for the forward pass (very slow for convs on AVX2-only CPUs)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--init", default="",
                   help="optional checkpoint to continue from (weights only; the lr schedule restarts)")
    p.add_argument("--decoder-only", type=int, default=0,
                   help="1 = fine-tune only the decoder of --init on its frozen encoder's posterior means "
                        "(latent space, scaling factor and every DiT trained on it stay valid)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--log-every", type=int, default=100, help="log interval in steps")
    p.add_argument("--save-every", type=int, default=1000, help="checkpoint interval in steps")
    return p.parse_args()


@torch.no_grad()
def evaluate(vae: KLVAE, x: torch.Tensor, batch: int = 500) -> tuple[float, float]:
    """Mean PSNR (dB) of posterior-mean reconstructions: (28x28 crop, data range [0,1]), (full 32x32)."""
    vae.eval()
    p_crop, p_full = [], []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        rec = vae.decode(vae.encode(xb)[0]).clamp(-1, 1)
        p_crop.append(psnr(crop(rec), crop(xb), 2.0))
        p_full.append(psnr(rec, xb, 2.0))
    vae.train()
    return torch.cat(p_crop).mean().item(), torch.cat(p_full).mean().item()


@torch.no_grad()
def latent_std(vae: KLVAE, x: torch.Tensor, batch: int = 1000) -> float:
    vae.eval()
    s1 = s2 = 0.0
    n = 0
    for i in range(0, len(x), batch):
        m = vae.encode(x[i:i + batch])[0].double()
        s1 += m.sum().item()
        s2 += m.pow(2).sum().item()
        n += m.numel()
    mean = s1 / n
    return math.sqrt(s2 / n - mean * mean)


def save(vae: KLVAE, path: str, extra: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"config": vae.cfg.to_dict(), "state_dict": vae.state_dict(), **extra}, path + ".tmp")
    os.replace(path + ".tmp", path)


def main() -> None:
    args = parse_args()
    set_threads(args.threads)
    seed_everything(args.seed)
    x_train, _ = load_tensors(args.data, "train")
    x_test, _ = load_tensors(args.data, "test")
    log(f"train {tuple(x_train.shape)} test {tuple(x_test.shape)}")

    vae = KLVAE(VAEConfig(base_channels=args.base_channels,
                              ch_mult=tuple(int(c) for c in args.ch_mult.split(",")),
                              unshuffle=args.unshuffle))
    prev_steps = 0
    if args.init:
        ckpt = torch.load(args.init, map_location="cpu", weights_only=True)
        vae.load_state_dict(ckpt["state_dict"])
        prev_steps = int(ckpt.get("total_steps", ckpt.get("step", 0)))
        log(f"continuing from {args.init} ({prev_steps} steps)")
    n_params = sum(p.numel() for p in vae.parameters())
    log(f"VAE params: {n_params:,} (encoder {sum(p.numel() for p in vae.encoder.parameters()):,})")
    means = None
    if args.decoder_only:
        if not args.init:
            raise SystemExit("train_vae.py: --decoder-only 1 needs --init CHECKPOINT (the encoder to keep)")
        vae.encoder.requires_grad_(False)
        means = vae.posterior_means(x_train)
        log(f"decoder only: encoder frozen, {len(means)} posterior means computed")
    trained = vae.decoder if args.decoder_only else vae
    opt = torch.optim.AdamW(trained.parameters(), lr=args.lr, weight_decay=0.0)
    timer = Timer()
    budget = args.minutes * 60.0
    gen = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(x_train), generator=gen)
    pos = 0
    step = 0
    run_mse = run_kl = 0.0
    while step < args.max_steps:
        progress = step / args.max_steps
        if budget > 0:
            progress = max(progress, timer.elapsed() / budget)
        if progress >= 1.0:
            break
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = lr
        if pos + args.batch_size > len(perm):
            perm = torch.randperm(len(x_train), generator=gen)
            pos = 0
        idx = perm[pos:pos + args.batch_size]
        pos += args.batch_size
        xb = x_train[idx]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(args.bf16)):
            if means is None:
                rec, mean, logvar = vae(xb)
            else:
                rec = vae.decode(means[idx])
        rec = rec.float()
        kl = KLVAE.kl(mean.float(), logvar.float()) if means is None else rec.new_zeros(())
        mse = (rec - xb).pow(2).mean()
        loss = mse + args.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        run_mse += mse.item()
        run_kl += kl.item()
        if step % args.log_every == 0:
            log(f"step {step} lr {lr:.2e} mse {run_mse / args.log_every:.5f} "
                f"(~{10 * math.log10(4 / max(run_mse / args.log_every, 1e-12)):.2f} dB full) "
                f"kl {run_kl / args.log_every:.1f} elapsed {timer.elapsed() / 60:.1f} min")
            run_mse = run_kl = 0.0
        if step % args.save_every == 0:
            save(vae, args.out, {"step": step, "total_steps": prev_steps + step, "finished": False})

    train_minutes = timer.elapsed() / 60
    p_crop, p_full = evaluate(vae, x_test)
    if args.decoder_only:  # same encoder, same latents: keep the scaling factor bit for bit
        std = 1.0 / vae.scaling_factor.item()
    else:
        std = latent_std(vae, x_train)
        vae.scaling_factor.fill_(1.0 / std)
    log(f"done: {step} steps in {train_minutes:.1f} min; test PSNR {p_crop:.2f} dB (28x28 crop), "
        f"{p_full:.2f} dB (32x32); latent std {std:.4f} -> scaling_factor {1 / std:.5f}")
    save(vae, args.out, {
        "step": step, "total_steps": prev_steps + step, "finished": True, "train_minutes": train_minutes,
        "test_psnr_crop28": p_crop, "test_psnr_full32": p_full, "latent_std": std,
        "args": vars(args),
    })
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
