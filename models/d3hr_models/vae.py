"""A small KL-regularised autoencoder (KL-VAE) for 1x32x32 images with a 4x8x8 latent.

Same interface idea as Stable Diffusion's ``AutoencoderKL``: the encoder returns the mean and the
log-variance of a diagonal Gaussian posterior, the decoder maps a latent back to an image in [-1, 1].
A tiny KL weight keeps the posterior nearly deterministic, so the posterior mean is used as the latent.
The diffusion model works on ``s * mean`` where ``s`` (``scaling_factor``) is 1 / std of the training
latents, the analogue of SD's 0.18215.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class VAEConfig:
    """Shape and width of the autoencoder."""

    in_channels: int = 1
    image_size: int = 32
    latent_channels: int = 4
    base_channels: int = 16
    #: channel multiplier per resolution level; len(ch_mult) - 1 downsamplings (32 -> 8 needs 3 levels)
    ch_mult: tuple[int, ...] = (1, 2, 4)
    groups: int = 8
    #: space-to-depth factor applied to the image first (pixel_unshuffle); the decoder ends with the
    #: matching pixel_shuffle. 32 / unshuffle / 2**(len(ch_mult) - 1) must be the latent size.
    unshuffle: int = 1

    @property
    def latent_size(self) -> int:
        return self.image_size // self.unshuffle // 2 ** (len(self.ch_mult) - 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ch_mult"] = list(self.ch_mult)
        return d

    @staticmethod
    def from_dict(d: dict) -> "VAEConfig":
        d = dict(d)
        d["ch_mult"] = tuple(d["ch_mult"])
        return VAEConfig(**d)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> 3x3 conv, twice, with a residual (1x1 conv when channels change)."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    """image [B, 1, 32, 32] -> (mean, logvar), each [B, 4, 8, 8].

    pixel_unshuffle(unshuffle) -> 3x3 conv -> per level: (strided conv,) ResBlock -> extra ResBlock
    -> GroupNorm, SiLU, 3x3 conv to 2 * latent_channels.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chs = [cfg.base_channels * m for m in cfg.ch_mult]
        self.unshuffle = cfg.unshuffle
        self.conv_in = nn.Conv2d(cfg.in_channels * cfg.unshuffle ** 2, chs[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, ch in enumerate(chs):
            cin = chs[i - 1] if i > 0 else chs[0]
            if i > 0:  # strided conv halves the resolution
                layers.append(nn.Conv2d(cin, ch, 3, stride=2, padding=1))
            layers.append(ResBlock(ch, ch, cfg.groups))
        layers.append(ResBlock(chs[-1], chs[-1], cfg.groups))
        self.down = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(cfg.groups, chs[-1])
        self.conv_out = nn.Conv2d(chs[-1], 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        h = self.down(self.conv_in(x))
        h = self.conv_out(F.silu(self.norm_out(h)))
        mean, logvar = h.chunk(2, dim=1)
        return mean, torch.clamp(logvar, -30.0, 20.0)


class Decoder(nn.Module):
    """latent [B, 4, 8, 8] (unscaled) -> image [B, 1, 32, 32] (about [-1, 1], not clamped)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chs = [cfg.base_channels * m for m in cfg.ch_mult][::-1]
        self.conv_in = nn.Conv2d(cfg.latent_channels, chs[0], 3, padding=1)
        layers: list[nn.Module] = [ResBlock(chs[0], chs[0], cfg.groups)]
        for i, ch in enumerate(chs):
            if i > 0:  # nearest upsampling + conv doubles the resolution
                layers.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
                layers.append(nn.Conv2d(chs[i - 1], ch, 3, padding=1))
            layers.append(ResBlock(ch, ch, cfg.groups))
        self.up = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(cfg.groups, chs[-1])
        self.conv_out = nn.Conv2d(chs[-1], cfg.in_channels * cfg.unshuffle ** 2, 3, padding=1)
        self.unshuffle = cfg.unshuffle

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_out(F.silu(self.norm_out(self.up(self.conv_in(z)))))
        return F.pixel_shuffle(h, self.unshuffle) if self.unshuffle > 1 else h


class KLVAE(nn.Module):
    """Encoder + decoder + the latent scaling factor (a buffer, saved in the state dict)."""

    def __init__(self, cfg: VAEConfig | None = None):
        super().__init__()
        self.cfg = cfg or VAEConfig()
        self.encoder = Encoder(self.cfg)
        self.decoder = Decoder(self.cfg)
        self.register_buffer("scaling_factor", torch.tensor(1.0))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @torch.no_grad()
    def posterior_means(self, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
        """Unscaled posterior means of a whole image tensor, encoded ``batch`` images at a time."""
        return torch.cat([self.encoder(x[i:i + batch])[0] for i in range(0, len(x), batch)])

    def forward(self, x: torch.Tensor, sample: bool = True):
        """Returns (reconstruction, mean, logvar); samples the posterior when ``sample``."""
        mean, logvar = self.encoder(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if sample else mean
        return self.decoder(z), mean, logvar

    @staticmethod
    def kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mean, exp(logvar)) || N(0, I)), summed over latent dims, averaged over the batch."""
        return 0.5 * torch.sum(mean.pow(2) + logvar.exp() - 1.0 - logvar, dim=(1, 2, 3)).mean()


def load_vae(path: str, map_location: str = "cpu") -> KLVAE:
    """Load a checkpoint written by ``train_vae.py`` ({'config', 'state_dict', ...})."""
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    vae = KLVAE(VAEConfig.from_dict(ckpt["config"]))
    vae.load_state_dict(ckpt["state_dict"])
    return vae.eval()


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Per-image PSNR in dB between two batches (range given by ``data_range``)."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10.0 * torch.log10(data_range ** 2 / mse)
