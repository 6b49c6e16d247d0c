"""Validate a distilled image set: train a fresh ConvNet-3 student on the distilled images only and report
its top-1 accuracy on the real Fashion-MNIST test set (all 10,000 images), mean +- std over seeds.

Input: an ImageFolder tree ``DIR/<class id>/<k>.png`` as written by ``d3hr-cli distill`` or
``python -m d3hr_eval.random_real``. Class folders must be named by their class id (0..9); hidden folders (such as
``.d3hr``) and files at the top level (``manifest.json``, ``stats.safetensors``) are ignored. Images of
any size and mode are accepted: converted to grayscale, resized to 28x28 (Lanczos) if needed, mapped to
[-1, 1] and padded to 32x32 with -1 -- the representation the teacher (d3hr_eval.train_teacher) and the
test set use.

Protocols (``--protocol``):

hard  The DC/DSA hard-label protocol: ConvNet-3 (width 128, instance norm, ReLU, average pooling),
      cross-entropy on the class labels, SGD lr 0.01 momentum 0.9 weight decay 5e-4, batch 256,
      300 epochs with the learning rate x0.1 at half. No augmentation (DC uses none for Fashion-MNIST).
      ``--dsa`` adds the DSA augmentation used to evaluate synthetic sets (DiffAugment,
      'color_crop_cutout_flip_scale_rotate', single mode: for every batch one of colour / crop /
      cutout / flip / scale / rotate is drawn, with independent random parameters per image;
      brightness +-0.5, contrast x[0.5, 1.5], saturation (a no-op for one channel), translation up to
      1/8 of the side, a 0.5x0.5 cutout, flip p = 0.5, per-axis scale in [1/1.2, 1.2], rotation
      +-15 degrees). They are applied to the 28x28 content in DC's normalised space (Fashion-MNIST
      mean 0.2861, std 0.3530), so zero fill means the mean intensity as in DC, then the result is
      re-padded to 32x32 with -1. The default epochs become 1000.
soft  The RDED-style protocol of the D3HR paper: soft labels from a teacher (``--teacher``, a ConvNet-3
      checkpoint written by d3hr_eval.train_teacher) computed on the same augmented batch the student
      sees (per-image RandomResizedCrop to 28x28 with scale ``--crop-scale`` and aspect ratio
      [3/4, 4/3], horizontal flip p = 0.5, optional CutMix with ``--cutmix``), loss
      KL(teacher || student) on logits softened by temperature T (``--temperature``, default 20;
      'batchmean' reduction, no T^2 factor, as in RDED / SRe2L), AdamW lr 1e-3 weight decay 0.01,
      cosine learning rate (per epoch, as RDED), batch 50, 300 epochs.

Output: per-seed accuracies, mean and std (numpy std, ddof 0) printed and, with ``--json``, written with
every setting, the images found per class and the wall time.

Examples:
    python -m d3hr_eval.validate --data out/ipc10 --protocol hard --seeds 0,1,2,3,4 --json hard.json
    python -m d3hr_eval.validate --data out/ipc10 --protocol hard --dsa --seeds 0,1,2 --json dsa.json
    python -m d3hr_eval.validate --data out/ipc10 --protocol soft \\
        --teacher models/fashion_mnist/checkpoints/teacher_convnet3.pt --seeds 0,1,2 --json soft.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from d3hr_eval.convnet import ConvNet, load_convnet
from d3hr_eval.data import DEFAULT_DATA_DIR, NUM_CLASSES, PAD, RAW_SIZE, machine, pad32, read_inputs

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: Fashion-MNIST pixel statistics in [0, 1] used by the DC/DSA code to normalise images.
FMNIST_MEAN, FMNIST_STD = 0.2861, 0.3530
#: DSA ParamDiffAug defaults (DC/DSA utils.py).
DSA_STRATEGY = ("color", "crop", "cutout", "flip", "scale", "rotate")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True,
                   help="ImageFolder of distilled images: DIR/<class id 0..9>/<k>.png (any size and mode)")
    p.add_argument("--test-data", default=DEFAULT_DATA_DIR,
                   help="folder with the Fashion-MNIST IDX files; the t10k split is the test set "
                        "(default: Debian's %(default)s)")
    p.add_argument("--protocol", choices=["hard", "soft"], required=True,
                   help="hard: DC/DSA cross-entropy protocol (SGD); soft: RDED teacher soft labels (AdamW)")
    p.add_argument("--dsa", action="store_true",
                   help="hard protocol only: add DSA augmentation (default epochs become 1000)")
    p.add_argument("--teacher", default="",
                   help="soft protocol only: ConvNet-3 checkpoint written by d3hr_eval.train_teacher")
    p.add_argument("--seeds", default="0,1,2",
                   help="comma-separated seeds, one student per seed (>= 3 for a table cell; 5 for the "
                        "final table)")
    p.add_argument("--epochs", type=int, default=0,
                   help="training epochs; 0 = the protocol default (hard 300, hard + --dsa 1000, soft 300)")
    p.add_argument("--batch", type=int, default=0,
                   help="batch size; 0 = the protocol default (hard 256, soft 50)")
    p.add_argument("--lr", type=float, default=0.0,
                   help="learning rate; 0 = the protocol default (hard SGD 0.01, soft AdamW 1e-3)")
    p.add_argument("--weight-decay", type=float, default=-1.0,
                   help="weight decay; negative = the protocol default (hard 5e-4, soft 0.01)")
    p.add_argument("--temperature", type=float, default=20.0, help="soft protocol: KL temperature T (default 20)")
    p.add_argument("--crop-scale", default="0.08,1.0",
                   help="soft protocol: RandomResizedCrop area range MIN,MAX (RDED default 0.08,1)")
    p.add_argument("--cutmix", type=float, default=0.0,
                   help="soft protocol: probability of applying CutMix to a batch (0 = off; the RDED code "
                        "applies CutMix to every batch, i.e. 1.0)")
    p.add_argument("--cutmix-beta", type=float, default=1.0, help="soft protocol: CutMix Beta(b, b) parameter")
    p.add_argument("--eval-every", type=int, default=0,
                   help="also evaluate on the test set every N epochs (0 = only at the end)")
    p.add_argument("--test-limit", type=int, default=0,
                   help="use only the first N test images (0 = all 10,000; for smoke tests only)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--json", default="", help="write the results as JSON to this file")
    return p.parse_args()


# ----------------------------------------------------------------------------------------------------
# Data


def load_image_folder(root: str) -> tuple[torch.Tensor, torch.Tensor, dict[int, int]]:
    """Images as float [N, 1, 32, 32] in [-1, 1] (padded with -1), labels [N], images found per class."""
    if not os.path.isdir(root):
        raise SystemExit(f"{root}: not a folder")
    xs: list[np.ndarray] = []
    ys: list[int] = []
    counts: dict[int, int] = {}
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.startswith(".") or not os.path.isdir(path):
            continue
        if not name.isdigit() or not 0 <= int(name) < NUM_CLASSES:
            raise SystemExit(f"{path}: class folders must be named by class id 0..{NUM_CLASSES - 1}")
        cls = int(name)
        files = sorted((f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTS)),
                       key=lambda f: (len(f), f))
        for f in files:
            with Image.open(os.path.join(path, f)) as im:
                im = im.convert("L")
                if im.size != (RAW_SIZE, RAW_SIZE):
                    im = im.resize((RAW_SIZE, RAW_SIZE), Image.LANCZOS)
                xs.append(np.asarray(im, dtype=np.uint8))
            ys.append(cls)
        counts[cls] = len(files)
    if not xs:
        raise SystemExit(f"{root}: no images found in class folders")
    x = torch.from_numpy(np.stack(xs).astype(np.float32) / 127.5 - 1.0).unsqueeze(1)
    x = pad32(x)
    return x, torch.tensor(ys, dtype=torch.int64), {c: counts.get(c, 0) for c in range(NUM_CLASSES)}


# ----------------------------------------------------------------------------------------------------
# DSA augmentation (hard protocol): DiffAugment, single mode, per-image parameters


def _to_dc(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1.0) / 2.0 - FMNIST_MEAN) / FMNIST_STD


def _from_dc(z: torch.Tensor) -> torch.Tensor:
    return (z * FMNIST_STD + FMNIST_MEAN) * 2.0 - 1.0


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)  # zero fill outside


def dsa_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One randomly chosen DSA transform for the batch, independent parameters per image.

    Applied to the 28x28 content (as DC, whose images are 28x28), which is then re-padded to 32x32 with -1.
    """
    z = _to_dc(x[..., PAD:PAD + RAW_SIZE, PAD:PAD + RAW_SIZE])
    n, _, h, w = z.shape
    kind = DSA_STRATEGY[int(torch.randint(len(DSA_STRATEGY), (1,), generator=gen))]
    if kind == "color":
        z = z + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 1.0  # brightness
        mean_c = z.mean(dim=1, keepdim=True)  # saturation: identity for one channel
        z = (z - mean_c) * (torch.rand(n, 1, 1, 1, generator=gen) * 2.0) + mean_c
        mean = z.mean(dim=(1, 2, 3), keepdim=True)  # contrast
        z = (z - mean) * (torch.rand(n, 1, 1, 1, generator=gen) + 0.5) + mean
    elif kind == "crop":  # translate by up to 1/8 of the side, zero fill
        sx, sy = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
        tx = torch.randint(-sx, sx + 1, (n,), generator=gen)
        ty = torch.randint(-sy, sy + 1, (n,), generator=gen)
        zp = F.pad(z, (sy, sy, sx, sx))
        z = torch.stack([zp[i, :, sx + int(tx[i]):sx + int(tx[i]) + h, sy + int(ty[i]):sy + int(ty[i]) + w]
                         for i in range(n)])
    elif kind == "cutout":  # a 0.5x0.5 square centred anywhere (clipped), set to zero
        ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
        ox = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=gen)
        oy = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=gen)
        rows = torch.arange(h).view(1, h, 1)
        cols = torch.arange(w).view(1, 1, w)
        inside = ((rows >= ox - ch // 2) & (rows < ox - ch // 2 + ch)
                  & (cols >= oy - cw // 2) & (cols < oy - cw // 2 + cw))
        z = z * (~inside).unsqueeze(1).to(z.dtype)
    elif kind == "flip":
        flip = torch.rand(n, generator=gen) < 0.5
        z = torch.where(flip.view(-1, 1, 1, 1), z.flip(-1), z)
    elif kind == "scale":
        r = 1.2
        s = torch.rand(n, 2, generator=gen) * (r - 1.0 / r) + 1.0 / r
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1] = s[:, 0], s[:, 1]
        z = _affine(z, theta)
    else:  # rotate by up to +-15 degrees
        a = (torch.rand(n, generator=gen) - 0.5) * 2 * 15.0 / 180 * math.pi
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a)
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
        z = _affine(z, theta)
    return F.pad(_from_dc(z), (PAD, PAD, PAD, PAD), value=-1.0)


# ----------------------------------------------------------------------------------------------------
# Soft-protocol augmentation: RandomResizedCrop + flip (+ CutMix)


def random_resized_crop(x: torch.Tensor, gen: torch.Generator, scale: tuple[float, float]) -> torch.Tensor:
    """Per-image RandomResizedCrop of the 28x28 content (torchvision's sampling rule), bilinear, re-padded."""
    raw = x[..., PAD:PAD + RAW_SIZE, PAD:PAD + RAW_SIZE]
    n, size = raw.shape[0], RAW_SIZE
    area = float(size * size)
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    theta = torch.zeros(n, 2, 3)
    for k in range(n):
        box = None
        for _ in range(10):
            target = area * (scale[0] + (scale[1] - scale[0]) * float(torch.rand(1, generator=gen)))
            ratio = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * float(torch.rand(1, generator=gen)))
            cw = int(round(math.sqrt(target * ratio)))
            chh = int(round(math.sqrt(target / ratio)))
            if 0 < cw <= size and 0 < chh <= size:
                i = int(torch.randint(0, size - chh + 1, (1,), generator=gen))
                j = int(torch.randint(0, size - cw + 1, (1,), generator=gen))
                box = (i, j, chh, cw)
                break
        if box is None:  # fallback: the whole image (square input)
            box = (0, 0, size, size)
        i, j, chh, cw = box
        # output [-1, 1] -> input box, align_corners=False coordinates
        theta[k, 0, 0] = cw / size
        theta[k, 0, 2] = (2 * j + cw) / size - 1
        theta[k, 1, 1] = chh / size
        theta[k, 1, 2] = (2 * i + chh) / size - 1
    grid = F.affine_grid(theta, [n, raw.shape[1], size, size], align_corners=False)
    out = F.grid_sample(raw, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return F.pad(out, (PAD, PAD, PAD, PAD), value=-1.0)


def flip_half(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def cutmix(x: torch.Tensor, gen: torch.Generator, beta: float) -> torch.Tensor:
    """Paste a random box from a shuffled copy of the batch (labels come from the teacher, so none mixed)."""
    n, _, h, w = x.shape
    lam = float(torch.distributions.Beta(beta, beta).sample()) if beta > 0 else 0.5
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy = int(torch.randint(0, h, (1,), generator=gen))
    cx = int(torch.randint(0, w, (1,), generator=gen))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    perm = torch.randperm(n, generator=gen)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    return out


# ----------------------------------------------------------------------------------------------------
# Training


@torch.no_grad()
def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    net.eval()
    correct = sum(int((net(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return correct / len(x)


def train_hard(x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, seed: int,
               args: argparse.Namespace) -> tuple[float, list[dict]]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = ConvNet()
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    curve: list[dict] = []
    for ep in range(args.epochs):
        if ep == args.epochs // 2:
            for g in opt.param_groups:
                g["lr"] = args.lr * 0.1
        net.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), args.batch):
            idx = perm[i:i + args.batch]
            xb = dsa_augment(x[idx], gen) if args.dsa else x[idx]
            loss = F.cross_entropy(net(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        record_curve(curve, net, x_test, y_test, ep, loss, seed, args, digits=4)
    return 100 * accuracy(net, x_test, y_test), curve


def record_curve(curve: list[dict], net: torch.nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, ep: int,
                 loss: torch.Tensor, seed: int, args: argparse.Namespace, digits: int) -> None:
    """With ``--eval-every N``: after every N-th epoch but the last, test and append to ``curve``."""
    if args.eval_every and (ep + 1) % args.eval_every == 0 and ep + 1 < args.epochs:
        curve.append({"epoch": ep + 1, "loss": loss.item(), "acc": 100 * accuracy(net, x_test, y_test)})
        print(f"  seed {seed} epoch {ep + 1}: loss {loss.item():.{digits}f} test {curve[-1]['acc']:.2f}%",
              flush=True)


def train_soft(x: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, teacher: torch.nn.Module,
               seed: int, args: argparse.Namespace) -> tuple[float, list[dict]]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = ConvNet()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda ep: 0.5 * (1 + math.cos(math.pi * ep / args.epochs)))
    t = args.temperature
    curve: list[dict] = []
    for ep in range(args.epochs):
        net.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), args.batch):
            xb = flip_half(random_resized_crop(x[perm[i:i + args.batch]], gen, args.crop_scale_pair), gen)
            if args.cutmix > 0 and float(torch.rand(1, generator=gen)) < args.cutmix:
                xb = cutmix(xb, gen, args.cutmix_beta)
            with torch.no_grad():
                soft = F.softmax(teacher(xb) / t, dim=1)
            loss = F.kl_div(F.log_softmax(net(xb) / t, dim=1), soft, reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        record_curve(curve, net, x_test, y_test, ep, loss, seed, args, digits=6)
    return 100 * accuracy(net, x_test, y_test), curve


def main() -> None:
    args = parse_args()
    if args.dsa and args.protocol != "hard":
        raise SystemExit("--dsa belongs to the hard protocol")
    if args.protocol == "soft" and not args.teacher:
        raise SystemExit("--protocol soft needs --teacher (a checkpoint from d3hr_eval.train_teacher)")
    hard = args.protocol == "hard"
    args.epochs = args.epochs or (1000 if args.dsa else 300 if hard else 300)
    args.batch = args.batch or (256 if hard else 50)
    args.lr = args.lr or (0.01 if hard else 1e-3)
    args.weight_decay = args.weight_decay if args.weight_decay >= 0 else (5e-4 if hard else 0.01)
    lo, hi = (float(v) for v in args.crop_scale.split(","))
    args.crop_scale_pair = (lo, hi)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not seeds:
        raise SystemExit("--seeds: give at least one seed")
    torch.set_num_threads(args.threads)

    t0 = time.time()
    x, y, counts = load_image_folder(args.data)
    x_test, y_test = read_inputs(args.test_data, "test")
    if args.test_limit:
        x_test, y_test = x_test[:args.test_limit], y_test[:args.test_limit]
    ipc = sorted(set(counts.values()))
    print(f"{args.data}: {len(x)} images, per class {counts}; protocol {args.protocol}"
          f"{' + DSA' if args.dsa else ''}, {args.epochs} epochs, batch {args.batch}; "
          f"test images {len(x_test)}", flush=True)
    if 0 in ipc:
        print(f"warning: classes without images: {[c for c, n in counts.items() if n == 0]}", flush=True)

    teacher = None
    teacher_info: dict = {}
    if not hard:
        teacher = load_convnet(args.teacher)
        for p_ in teacher.parameters():
            p_.requires_grad_(False)
        ckpt = torch.load(args.teacher, map_location="cpu", weights_only=True)
        teacher_info = {"path": os.path.abspath(args.teacher), "config": ckpt.get("config"),
                        "recorded_test_accuracy": ckpt.get("test_accuracy"),
                        "steps": ckpt.get("total_steps", ckpt.get("steps"))}

    accs: list[float] = []
    runs: list[dict] = []
    for seed in seeds:
        ts = time.time()
        if hard:
            acc, curve = train_hard(x, y, x_test, y_test, seed, args)
        else:
            acc, curve = train_soft(x, x_test, y_test, teacher, seed, args)
        accs.append(acc)
        runs.append({"seed": seed, "acc": acc, "seconds": time.time() - ts, "curve": curve})
        print(f"seed {seed}: test accuracy {acc:.2f}% ({time.time() - ts:.1f} s)", flush=True)
    mean, std = float(np.mean(accs)), float(np.std(accs))
    wall = time.time() - t0
    print(f"{args.protocol}{' + DSA' if args.dsa else ''}: {mean:.2f} +- {std:.2f}% over {len(seeds)} seeds "
          f"({wall:.1f} s)", flush=True)

    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "crop_scale_pair")}
        if hard:
            for k in ("teacher", "temperature", "crop_scale", "cutmix", "cutmix_beta"):
                settings.pop(k)
        result = {
            "data": os.path.abspath(args.data),
            "protocol": args.protocol + ("+dsa" if args.dsa else ""),
            "model": "ConvNet-3 (width 128, instance norm, ReLU, avg-pool), 1x32x32 input in [-1, 1]",
            "optimizer": ("SGD momentum 0.9, lr x0.1 at epochs // 2" if hard
                          else "AdamW, cosine lr per epoch; KL(teacher||student) at temperature T"),
            "settings": settings,
            "images": len(x), "images_per_class": counts, "ipc": ipc[0] if len(ipc) == 1 else ipc,
            "test_images": len(x_test),
            "teacher": teacher_info or None,
            "seeds": seeds, "accuracies": accs, "mean": mean, "std": std, "std_ddof": 0,
            "runs": runs, "wall_seconds": wall, "machine": machine(),
            "torch": torch.__version__, "python": platform.python_version(),
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
