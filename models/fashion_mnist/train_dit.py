"""Train a small class-conditional DiT on the scaled VAE latents of Fashion-MNIST (from encode.py).

Objective: epsilon-prediction MSE (DDPM, DiT's linear beta schedule 1e-4..0.02 over 1000 steps,
t ~ U{0..999}); 10 % of the labels are replaced by the null class id 10 (classifier-free guidance).
With --learn-sigma 1 the model has 2C output channels but only the first C (epsilon) are trained
(no variational-bound term; the variance channels stay untrained).
Optimiser: AdamW (a linear warm-up, then a constant lr or, with --cosine-steps, a cosine to 0; weight decay 0), batch --batch-size; an EMA of
the weights (decay --ema, with the usual (1+n)/(10+n) warm-up) is kept and is what gets exported.

The run stops after --max-steps or when --minutes of wall-clock time have passed, whichever is first.
Every --save-every steps a full training state (model, EMA, optimiser, step) is written to --state
(git-ignored) so an interrupted run can continue with --resume; at the end the EMA weights alone are
written to --out.

Example (the command used for the committed checkpoint is in MODEL_CARD.md):
    python models/fashion_mnist/train_dit.py --minutes 70
"""
from __future__ import annotations

import argparse
import copy
import os

import numpy as np
import torch

from d3hr_fashion_mnist._common import CHECKPOINT_DIR, WORK_DIR, Timer, log, seed_everything, set_threads
from d3hr_models.diffusion import alphas_cumprod, q_sample
from d3hr_models.dit import DiT, DiTConfig


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latents", default=os.path.join(WORK_DIR, "latents"),
                   help="folder with latents_train.npy / labels_train.npy written by encode.py")
    p.add_argument("--out", default=os.path.join(CHECKPOINT_DIR, "dit_ema.pt"),
                   help="final checkpoint: {'config', 'ema', ...} with the EMA weights only")
    p.add_argument("--state", default=os.path.join(WORK_DIR, "dit_train_state.pt"),
                   help="full training state for --resume (git-ignored)")
    p.add_argument("--resume", type=int, default=0, help="1 = continue from --state if it exists")
    p.add_argument("--init", default="",
                   help="start from the EMA weights of this checkpoint (an --out file: model and EMA both, "
                        "a fresh optimiser with warm-up; the step count continues from the checkpoint's)")
    p.add_argument("--minutes", type=float, default=70.0, help="wall-clock budget for this invocation")
    p.add_argument("--max-steps", type=int, default=1_000_000, help="maximum total optimizer steps")
    p.add_argument("--batch-size", type=int, default=128, help="batch size")
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate (after warm-up: constant, or a cosine with --cosine-steps)")
    p.add_argument("--warmup", type=int, default=200, help="linear warm-up steps")
    p.add_argument("--cosine-steps", type=int, default=0,
                   help="> 0: after warm-up the lr follows a cosine from --lr to 0; warm-up and cosine together span "
                        "this many steps of this invocation (0 = constant lr)")
    p.add_argument("--bf16", type=int, default=0,
                   help="1 = bf16 autocast for the forward pass (fp32 master weights; fast on AVX512-BF16/AMX CPUs)")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay")
    p.add_argument("--hidden", type=int, default=192, help="transformer width")
    p.add_argument("--depth", type=int, default=6, help="number of DiT blocks")
    p.add_argument("--heads", type=int, default=3, help="attention heads")
    p.add_argument("--patch", type=int, default=2, help="patch size (8x8 latent -> (8/p)^2 tokens)")
    p.add_argument("--learn-sigma", type=int, default=0, help="1 = 2C output channels (only eps trained)")
    p.add_argument("--class-dropout", type=float, default=0.1, help="label dropout to the null class")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--log-every", type=int, default=50, help="log interval in steps")
    p.add_argument("--save-every", type=int, default=250, help="training-state interval in steps")
    return p.parse_args()


def save_atomic(obj: dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def main() -> None:
    args = parse_args()
    set_threads(args.threads)
    seed_everything(args.seed)
    z = torch.from_numpy(np.load(os.path.join(args.latents, "latents_train.npy")))
    y = torch.from_numpy(np.load(os.path.join(args.latents, "labels_train.npy")))
    log(f"latents {tuple(z.shape)} std {z.std():.4f}")
    cfg = DiTConfig(input_size=z.shape[-1], patch_size=args.patch, in_channels=z.shape[1],
                    hidden_size=args.hidden, depth=args.depth, num_heads=args.heads,
                    class_dropout_prob=args.class_dropout, num_classes=int(y.max()) + 1,
                    learn_sigma=bool(args.learn_sigma))
    model = DiT(cfg).train()
    ema = copy.deepcopy(model).eval()
    for p_ in ema.parameters():
        p_.requires_grad_(False)
    trainable = [p_ for p_ in model.parameters() if p_.requires_grad]
    log(f"DiT params: {sum(p_.numel() for p_ in trainable):,} trainable "
        f"(+{model.pos_embed.numel():,} fixed pos_embed); config {cfg.to_dict()}")
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    step = 0
    warm_from = 0  # the step the lr warm-up counts from: a resumed optimiser does not warm up again
    minutes_before = 0.0
    gen = torch.Generator().manual_seed(args.seed)
    if args.resume and os.path.exists(args.state):
        st = torch.load(args.state, map_location="cpu", weights_only=False)
        model.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        minutes_before = st.get("train_minutes", 0.0)
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])
        log(f"resumed from {args.state} at step {step}")
    elif args.init:
        ck = torch.load(args.init, map_location="cpu", weights_only=True)
        if ck["config"] != cfg.to_dict():
            raise SystemExit(f"--init {args.init}: config {ck['config']} differs from {cfg.to_dict()}")
        model.load_state_dict(ck["ema"])
        ema.load_state_dict(ck["ema"])
        step = int(ck.get("step", 0))
        warm_from = step  # a fresh optimiser warms up again
        minutes_before = float(ck.get("train_minutes", 0.0))
        log(f"initialised from the EMA weights of {args.init} (step {step}); fresh optimiser")
    cosine_from = step + args.warmup  # the cosine starts after this invocation's warm-up
    ac = torch.from_numpy(alphas_cumprod()).float()
    timer = Timer()
    budget = args.minutes * 60.0
    run_loss, run_n = 0.0, 0

    def state() -> dict:
        return {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "config": cfg.to_dict(),
                "train_minutes": minutes_before + timer.elapsed() / 60}

    ema_params = [p_ for p_ in ema.parameters()]
    model_params = [p_ for p_ in model.parameters()]
    while step < args.max_steps and (budget <= 0 or timer.elapsed() < budget):
        lr = args.lr * min(1.0, (step - warm_from + 1) / args.warmup)
        if args.cosine_steps > 0 and step >= cosine_from:
            frac = min(1.0, (step - cosine_from) / max(1, args.cosine_steps - args.warmup))
            lr = args.lr * 0.5 * (1.0 + np.cos(np.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, len(z), (args.batch_size,), generator=gen)
        z0, yb = z[idx], y[idx]
        t = torch.randint(0, len(ac), (args.batch_size,), generator=gen)
        noise = torch.randn(z0.shape, generator=gen)
        zt = q_sample(z0, t, noise, ac)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(args.bf16)):
            eps = model(zt, t, yb)[:, : cfg.in_channels]
        loss = (eps.float() - noise).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_mul_(ema_params, decay)
            torch._foreach_add_(ema_params, model_params, alpha=1 - decay)
        run_loss += loss.item()
        run_n += 1
        if step % args.log_every == 0:
            log(f"step {step} lr {lr:.2e} loss {run_loss / run_n:.4f} "
                f"elapsed {timer.elapsed() / 60:.1f} min")
            run_loss, run_n = 0.0, 0
        if step % args.save_every == 0:
            save_atomic(state(), args.state)
    save_atomic(state(), args.state)
    total_minutes = minutes_before + timer.elapsed() / 60
    save_atomic({"config": cfg.to_dict(), "ema": ema.state_dict(), "step": step, "train_minutes": total_minutes,
                 "ema_decay": args.ema, "args": vars(args)}, args.out)
    log(f"done: {step} steps, {total_minutes:.1f} min in total; wrote {args.out}")


if __name__ == "__main__":
    main()
