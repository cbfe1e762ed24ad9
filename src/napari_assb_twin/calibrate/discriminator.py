"""2D CNN discriminator on P x P one-hot crops, and the adversarial losses (METHOD.md section 7).

Default architecture: four conv layers (kernel 4, stride 2, padding 1) with ``width * (1, 2, 4, 8)``
feature maps (64, 128, 256, 512 for ``width=64``), LeakyReLU(0.2) after each, and a final conv whose
kernel covers the remaining ``P / 16`` pixels, giving one score per crop. No batch normalisation:
the WGAN-GP gradient penalty is defined per sample.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ADV_LOSSES",
    "Discriminator",
    "critic_loss",
    "generator_loss",
    "random_crops",
]

from ..options import ADV_LOSSES


class Discriminator(nn.Module):
    """Conv k4 s2 x4 (LeakyReLU 0.2) + final conv to one score.

    Parameters
    ----------
    patch
        Crop side P (a multiple of 16, >= 16).
    width
        Feature maps of the first layer (64 = the paper's default; smaller widths keep CPU runs
        feasible).
    in_channels
        Phases (3).
    """

    def __init__(self, patch: int = 64, width: int = 64, in_channels: int = 3, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if patch < 16 or patch % 16:
            raise ValueError(f"patch size must be a multiple of 16 and >= 16, got {patch}")
        if width < 1:
            raise ValueError(f"discriminator width must be >= 1, got {width}")
        self.patch = int(patch)
        self.width = int(width)
        layers: list[nn.Module] = []
        ch = in_channels
        for k in range(4):
            out = width * 2**k
            layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.LeakyReLU(0.2)]
            ch = out
        layers.append(nn.Conv2d(ch, 1, patch // 16, 1, 0))
        self.net = nn.Sequential(*layers)
        if generator is not None:
            # deterministic initialisation from an explicit generator (same seed -> same network)
            with torch.no_grad():
                for p in self.parameters():
                    bound = 1.0 / max(1, p[0].numel()) ** 0.5 if p.ndim > 1 else 0.01
                    p.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``(B,)`` of one-hot crops ``(B, 3, P, P)``."""
        return self.net(x).reshape(x.shape[0])


def random_crops(
    images: list[torch.Tensor], n: int, patch: int, generator: torch.Generator, flip: bool = True
) -> torch.Tensor:
    """``n`` random ``patch x patch`` crops from one-hot images ``(3, H, W)`` (uniform over images
    weighted by their number of crop positions), optionally flipped along each axis (flips are
    symmetries of the model in both planes)."""
    dev = images[0].device
    counts = torch.tensor([(im.shape[1] - patch + 1) * (im.shape[2] - patch + 1) for im in images], dtype=torch.float64)
    which = torch.multinomial(counts / counts.sum(), n, replacement=True, generator=_cpu(generator))
    u = torch.rand((n, 4), generator=_cpu(generator), dtype=torch.float64)
    crops = []
    for k in range(n):
        im = images[int(which[k])]
        y = int(u[k, 0] * (im.shape[1] - patch + 1))
        x = int(u[k, 1] * (im.shape[2] - patch + 1))
        c = im[:, y : y + patch, x : x + patch]
        if flip and u[k, 2] < 0.5:
            c = c.flip(1)
        if flip and u[k, 3] < 0.5:
            c = c.flip(2)
        crops.append(c)
    return torch.stack(crops).to(dev)


def _cpu(generator: torch.Generator) -> torch.Generator:
    if generator.device.type == "cpu":
        return generator
    g = torch.Generator()
    g.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item()))
    return g


def critic_loss(
    disc: Discriminator,
    real: torch.Tensor,
    fake: torch.Tensor,
    kind: str = "wgan-gp",
    gp_lambda: float = 10.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Discriminator loss on real and (detached) fake crops.

    WGAN-GP: ``D(fake) - D(real) + lambda (||grad D(x_hat)|| - 1)^2`` on random interpolates;
    BCE: the standard binary cross-entropy with logits.
    """
    fake = fake.detach()
    d_real = disc(real)
    d_fake = disc(fake)
    if kind == "wgan-gp":
        eps = torch.rand((real.shape[0], 1, 1, 1), generator=generator, device=real.device, dtype=real.dtype)
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        grad = torch.autograd.grad(disc(x_hat).sum(), x_hat, create_graph=True)[0]
        gp = ((grad.reshape(grad.shape[0], -1).norm(dim=1) - 1.0) ** 2).mean()
        w = d_real.mean() - d_fake.mean()
        loss = -w + gp_lambda * gp
        return loss, {"critic": float(loss.detach()), "wasserstein": float(w.detach()), "gp": float(gp.detach())}
    if kind == "bce":
        bce = nn.functional.binary_cross_entropy_with_logits
        loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        return loss, {"critic": float(loss.detach())}
    raise ValueError(f"adversarial loss must be one of {ADV_LOSSES}, got {kind!r}")


def generator_loss(disc: Discriminator, fake: torch.Tensor, kind: str = "wgan-gp") -> torch.Tensor:
    """Model loss: ``-D(fake)`` (WGAN) or non-saturating ``BCE(D(fake), 1)``."""
    d_fake = disc(fake)
    if kind == "wgan-gp":
        return -d_fake.mean()
    if kind == "bce":
        return nn.functional.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    raise ValueError(f"adversarial loss must be one of {ADV_LOSSES}, got {kind!r}")
