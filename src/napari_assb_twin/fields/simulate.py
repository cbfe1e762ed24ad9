"""Spectral (circulant-embedding) simulation of stationary Gaussian fields on periodic grids.

The correlation is evaluated on the periodic grid, FFT'd to a spectral density, clipped at 0 and
renormalised so the discrete field has unit variance exactly; white complex noise shaped by the
square root of the density and inverse-FFT'd gives *two* independent real fields (real and
imaginary part), which halves the FFT work for chi-square fields. Everything is torch, batched,
float32, on any device and differentiable in the covariance parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .bridged import bridge_weight, is_bridged
from .covariance import Covariance


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded with ``seed`` (random seed if None)."""
    g = torch.Generator(device=torch.device(device))
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def grid_lags(
    shape: Sequence[int], axes: Sequence[int], device: torch.device | str = "cpu", periodic: bool = True
) -> dict[int, torch.Tensor]:
    """Lags per grid dimension, keyed by the 3D axis it represents.

    Periodic lags are ``min(i, n - i)``; with ``periodic=False`` they are ``i`` (one octant).
    """
    if len(shape) != len(axes):
        raise ValueError(f"grid shape {tuple(shape)} and axes {tuple(axes)} differ in length")
    lags = {}
    for dim, (n, ax) in enumerate(zip(shape, axes)):
        i = torch.arange(n, device=device, dtype=torch.float32)
        h = torch.minimum(i, n - i) if periodic else i
        view = [1] * len(shape)
        view[dim] = n
        lags[int(ax)] = h.view(view)
    return lags


def _mirror_index(n: int, device) -> torch.Tensor:
    """Index into the first ``n // 2 + 1`` lags reproducing the periodic lag ``min(i, n - i)``."""
    i = torch.arange(n, device=device)
    return torch.minimum(i, n - i)


def spectral_sqrt(cov: Covariance, shape: Sequence[int], axes: Sequence[int] | None = None) -> torch.Tensor:
    """Square root of the discrete spectral density of ``cov`` on a periodic grid.

    Normalised so that the mean density is 1, i.e. the simulated field has unit variance on the
    grid (negative parts from the periodic embedding are clipped first).

    Parameters
    ----------
    cov
        The covariance model (lengths in px).
    shape
        Grid shape (2D or 3D).
    axes
        3D axes spanned by the grid dimensions (default ``0..ndim-1``); a 2D section perpendicular to
        axis 0 has ``axes=(1, 2)``.
    """
    shape = tuple(int(s) for s in shape)
    axes = tuple(range(len(shape))) if axes is None else tuple(axes)
    device = next(cov.parameters()).device
    # The periodic correlation grid is even in every axis: evaluate one octant, mirror by indexing.
    half = tuple(n // 2 + 1 for n in shape)
    rho = cov.correlation(grid_lags(half, axes, device, periodic=False)).expand(half)
    idx = [_mirror_index(n, device) for n in shape]
    view = [ix.view([-1 if d == k else 1 for k in range(len(shape))]) for d, ix in enumerate(idx)]
    rho = rho[tuple(view)]
    dens = torch.fft.fftn(rho).real.clamp_min(0.0)
    dens = dens / dens.mean()
    return torch.sqrt(dens.clamp_min(1e-12))


def complex_fields(
    cov: Covariance,
    shape: Sequence[int],
    n_complex: int,
    generator: torch.Generator | None = None,
    axes: Sequence[int] | None = None,
    sqrt_density: torch.Tensor | None = None,
) -> torch.Tensor:
    """``n_complex`` complex fields whose real and imaginary parts are independent unit-variance
    Gaussian fields with covariance ``cov`` (shape ``(n_complex, *shape)``, complex64).

    With complex white noise Z (E|Z|^2 = 1), ifft(sqrt(S) Z) has real and imaginary parts with
    covariance rho / (2N) each and zero cross-covariance because S is real and even.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 2:
        raise ValueError(f"grid shape must be 2D or 3D with every side >= 2, got {shape}")
    if sqrt_density is None:
        sqrt_density = spectral_sqrt(cov, shape, axes)
    noise = torch.randn((n_complex, *shape), dtype=torch.complex64, device=sqrt_density.device, generator=generator)
    dims = tuple(range(1, 1 + len(shape)))
    scale = math.sqrt(2.0 * math.prod(shape))
    return torch.fft.ifftn(noise * (sqrt_density * scale), dim=dims)


def gaussian_fields(
    cov: Covariance,
    shape: Sequence[int],
    n_fields: int = 1,
    batch: int = 1,
    generator: torch.Generator | None = None,
    axes: Sequence[int] | None = None,
    sqrt_density: torch.Tensor | None = None,
) -> torch.Tensor:
    """Independent unit-variance Gaussian fields with covariance ``cov``.

    Returns
    -------
    torch.Tensor
        float32, shape ``(batch, n_fields, *shape)`` on the covariance's device.
    """
    total = batch * n_fields
    z = complex_fields(cov, shape, math.ceil(total / 2), generator, axes, sqrt_density)
    parts = torch.cat([z.real, z.imag])[:total]
    return parts.reshape(batch, n_fields, *z.shape[1:])


def chi2_fields(
    cov: Covariance,
    shape: Sequence[int],
    dof: float,
    batch: int = 1,
    generator: torch.Generator | None = None,
    axes: Sequence[int] | None = None,
    sqrt_density: torch.Tensor | None = None,
) -> torch.Tensor:
    """Chi-square(``dof``) fields Y_1^2 + ... + Y_dof^2, shape ``(batch, *shape)``; a fractional dof
    in (1, 2) gives the bridged field Y_1^2 + (dof - 1) Y_2^2 (:mod:`.bridged`).

    Pairs of Gaussian fields come from one complex FFT each: |z|^2 = Re(z)^2 + Im(z)^2.
    """
    if is_bridged(dof):
        z = complex_fields(cov, shape, batch, generator, axes, sqrt_density)
        return z.real**2 + bridge_weight(dof) * z.imag**2
    pairs, odd = divmod(int(dof), 2)
    z = complex_fields(cov, shape, batch * (pairs + odd), generator, axes, sqrt_density)
    z = z.reshape(batch, pairs + odd, *z.shape[1:])
    out = (z[:, :pairs].real ** 2 + z[:, :pairs].imag ** 2).sum(1) if pairs else 0.0
    if odd:
        out = out + z[:, -1].real ** 2
    return out


def gaussian_field(
    cov: Covariance,
    shape: Sequence[int],
    batch: int = 1,
    generator: torch.Generator | None = None,
    axes: Sequence[int] | None = None,
) -> torch.Tensor:
    """One unit-variance Gaussian field per batch element, shape ``(batch, *shape)``."""
    return gaussian_fields(cov, shape, 1, batch, generator, axes)[:, 0]
