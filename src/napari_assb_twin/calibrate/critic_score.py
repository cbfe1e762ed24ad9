"""A critic as a model-selection statistic (issue 21, item 5): how well a small CNN tells the real
sections from a candidate model's simulated sections.

A classifier two-sample test. The paper's discriminator (:class:`~.discriminator.Discriminator`, a
narrow one) is trained for a few hundred steps to separate random ``patch x patch`` crops of the real
sections from crops of the model's simulated sections (:meth:`ThreePhaseModel.sample_sections`), then
evaluated on crops it never saw:

* the real sections are split in two halves along their longer side; the critic trains on one half of
  every section and is tested on the other half (all crop positions on a grid of stride ``patch / 2``),
  then the halves swap roles (``folds=2``) and the two results are averaged. Overlapping crops of one
  half never reach the test side, so a critic that memorises its real crops gains nothing;
* the simulated side is fresh sections for training and other fresh sections, cut on the same grid,
  for testing.

The distance is ``2 AUC - 1`` of the critic's held-out scores (``kind="bce"``, the default; 0 = the
critic cannot tell them apart, 1 = always can; slightly negative values are noise), or the held-out
Wasserstein estimate ``mean D(real) - mean D(fake)`` of a WGAN-GP critic (``kind="wgan-gp"``; its scale
depends on the training length, so compare it only between candidates scored alike).

The same seed gives the same critic initialisation, real crops and simulated sections for every
candidate, so differences between candidates are not differences of luck in the critic's start. The
real side's own noise (how representative the held-out halves are) is common to all candidates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..options import PLANES
from ..phases import N_PHASES
from .discriminator import Discriminator, critic_loss, random_crops

__all__ = ["CRITIC_KINDS", "CRITIC_PATCHES", "check_critic_data", "checked_critic_input", "critic_distance", "critic_patch",
           "data_critic_distance"]

#: Statistics the critic can give: classifier AUC (``bce``) or a Wasserstein estimate (``wgan-gp``).
CRITIC_KINDS = ("bce", "wgan-gp")
#: Crop sides tried, largest first (multiples of 16, the discriminator's stride). 64 px crops cost 3x
#: the time of 32 px ones per step on a CPU (measured: 71 vs 26 ms per step of 32 + 32 crops at width 8).
CRITIC_PATCHES = (32, 16)
#: Held-out real crops (over all sections of a plane, per fold) below which the test is refused.
MIN_TEST_CROPS = 4


def critic_patch(shapes: Sequence[tuple[int, int]]) -> int:
    """The largest crop side of :data:`CRITIC_PATCHES` whose crops fit twice across the shorter side of
    every section's halves (so each held-out half offers several crop positions both ways).

    Raises
    ------
    ValueError
        No section, or a section too small for the smallest crop (16 px a side in each half).
    """
    if not shapes:
        raise ValueError("the critic needs at least one real section")
    half_min = min(min(max(h, w) // 2, min(h, w)) for h, w in shapes)
    for p in CRITIC_PATCHES:
        if 2 * p <= half_min:
            return p
    smallest = min(shapes, key=lambda s: min(s))
    raise ValueError(
        f"sections are too small for the critic: it trains on one half of each section and tests on the other, "
        f"and needs halves of at least {2 * CRITIC_PATCHES[-1]} x {2 * CRITIC_PATCHES[-1]} px; got "
        f"{smallest[0]} x {smallest[1]} (sections of at least 64 x 32 px)")


def checked_critic_input(
    real_sections: Sequence[np.ndarray], planes: str | Sequence[str] = "inplane", patch: int | None = None
) -> tuple[dict[str, list[np.ndarray]], int]:
    """The sections grouped by plane and the crop side, after every check of :func:`critic_distance`
    (run before any simulation or training).

    Raises
    ------
    ValueError
        No section, a section that is not a 2D phase map, planes that do not match, sections too small
        for the crops in each half, or too few held-out crops per plane.
    """
    sections = [np.asarray(s) for s in real_sections]
    if not sections:
        raise ValueError("the critic needs at least one real section")
    for k, s in enumerate(sections):
        if s.ndim != 2:
            raise ValueError(f"real section {k}: the critic needs 2D sections, got shape {s.shape}")
        if s.size and (s.min() < 0 or s.max() >= N_PHASES):
            raise ValueError(f"real section {k}: labels must be phases 0..{N_PHASES - 1}, got {s.min()}..{s.max()}")
    plane_list = [planes] * len(sections) if isinstance(planes, str) else list(planes)
    if len(plane_list) != len(sections):
        raise ValueError(f"{len(sections)} sections but {len(plane_list)} planes")
    for p in plane_list:
        if p not in PLANES:
            raise ValueError(f"plane must be one of {PLANES}, got {p!r}")
    if patch is None:
        patch = critic_patch([s.shape for s in sections])
    elif patch < 16 or patch % 16:
        raise ValueError(f"critic patch must be a multiple of 16 and >= 16, got {patch}")
    by_plane: dict[str, list[np.ndarray]] = {}
    for s, p in zip(sections, plane_list):
        by_plane.setdefault(p, []).append(s)
    for p, ims in by_plane.items():
        for im in ims:
            a, b = _halves(im)
            if min(a.shape) < patch or min(b.shape) < patch:
                raise ValueError(f"a {im.shape[0]} x {im.shape[1]} px {p} section is too small for {patch} px critic "
                                 f"crops in each half; give larger sections or a smaller patch")
        n_test = min(sum(len(_grid(_halves(im)[f].shape, patch)) for im in ims) for f in range(2))
        if n_test < MIN_TEST_CROPS:
            raise ValueError(f"too little {p} section area for the critic: {n_test} held-out crops of {patch} px "
                             f"(at least {MIN_TEST_CROPS}); give more or larger sections")
    return by_plane, int(patch)


def _halves(im: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two halves of a section along its longer side."""
    if im.shape[0] >= im.shape[1]:
        h = im.shape[0] // 2
        return im[:h], im[h: 2 * h]
    w = im.shape[1] // 2
    return im[:, :w], im[:, w: 2 * w]


def _grid(shape: tuple[int, int], patch: int) -> list[tuple[int, int]]:
    """Crop corners on a grid of stride ``patch / 2`` covering the image (the last row / column flush)."""
    step = max(1, patch // 2)

    def starts(n: int) -> list[int]:
        s = list(range(0, n - patch + 1, step))
        if s[-1] != n - patch:
            s.append(n - patch)
        return s

    return [(y, x) for y in starts(shape[0]) for x in starts(shape[1])]


def _one_hot(labels: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` labels -> ``(..., 3, H, W)`` float one-hot."""
    oh = torch.nn.functional.one_hot(labels.long(), N_PHASES).to(torch.float32)
    return oh.movedim(-1, -3)


def _grid_crops(images: Sequence[torch.Tensor], patch: int) -> torch.Tensor:
    """Every grid crop of one-hot images ``(3, H, W)``, stacked."""
    return torch.stack([im[:, y: y + patch, x: x + patch] for im in images
                        for y, x in _grid(tuple(im.shape[1:]), patch)])


def _auc(real: torch.Tensor, fake: torch.Tensor) -> float:
    """P(score(real) > score(fake)) + P(tie) / 2 (Mann-Whitney), from two 1D score tensors."""
    r = real.double().cpu().numpy()
    f = np.sort(fake.double().cpu().numpy())
    below = np.searchsorted(f, r, side="left")
    ties = np.searchsorted(f, r, side="right") - below
    return float((below + 0.5 * ties).sum() / (r.size * f.size))


def _scores(disc: Discriminator, crops: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([disc(crops[k: k + chunk]) for k in range(0, crops.shape[0], chunk)])


def critic_distance(
    real_sections: Sequence[np.ndarray],
    model,
    planes: str | Sequence[str] = "inplane",
    seed: int = 0,
    *,
    kind: str = "bce",
    patch: int | None = None,
    width: int = 8,
    steps: int = 150,
    batch: int = 32,
    lr: float = 1e-3,
    folds: int = 2,
    fake_sections: int = 8,
) -> float:
    """Held-out separability of real sections from ``model``'s simulated sections (module docstring).

    Parameters
    ----------
    real_sections
        2D phase maps (0 pore, 1 active, 2 electrolyte), each at least 64 x 32 px.
    model
        A :class:`~napari_assb_twin.model.ThreePhaseModel` (or anything with its ``device`` and
        ``sample_sections(size, plane, batch=, generator=)``); its sections are simulated on its device.
    planes
        The plane of every section (``"inplane"`` / ``"axial"``), or one plane for all. A critic is
        trained per plane; the result is the mean over planes.
    seed
        Seed of the critic's initialisation, its crops and the simulated sections.
    kind
        ``"bce"``: ``2 AUC - 1`` of a classifier; ``"wgan-gp"``: held-out Wasserstein estimate.
    patch
        Crop side (multiple of 16); default :func:`critic_patch` of the sections.
    width, steps, batch, lr
        Discriminator width, training steps, crops per side per step, Adam learning rate.
    folds
        1: train on the first half of each section, test on the second; 2: also the other way round.
    fake_sections
        Simulated sections per plane for training, and again for testing.

    Returns
    -------
    float
        The distance (lower = closer; ~0 when the critic cannot tell them apart).
    """
    if kind not in CRITIC_KINDS:
        raise ValueError(f"critic kind must be one of {CRITIC_KINDS}, got {kind!r}")
    for name, v, lo in (("steps", steps, 1), ("batch", batch, 2), ("folds", folds, 1), ("fake_sections", fake_sections, 1),
                        ("width", width, 1)):
        if int(v) < lo:
            raise ValueError(f"critic {name} must be >= {lo}, got {v}")
    if folds > 2:
        raise ValueError(f"critic folds must be 1 or 2, got {folds}")
    by_plane, patch = checked_critic_input(real_sections, planes, patch)
    dev = model.device
    values = []
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        # convolutions this small gain nothing from threads, and on a loaded CPU two threads made a step
        # 13x slower (1.4 s vs 0.1 s, load 11 on 2 cores); the caller's setting comes back below
        torch.set_num_threads(1)
    try:
        for i, (plane, ims) in enumerate(sorted(by_plane.items())):
            for fold in range(folds):
                run_seed = int(seed) * 7919 + 31 * i + fold
                values.append(_one_critic(ims, model, plane, run_seed, fold, kind, patch, width, steps, batch, lr,
                                          fake_sections, dev))
    finally:
        torch.set_num_threads(threads)
    # the mean over folds per plane, then over planes (folds are equal in number per plane)
    return float(np.mean(values))


def _one_critic(ims: Sequence[np.ndarray], model, plane: str, seed: int, fold: int, kind: str, patch: int,
                width: int, steps: int, batch: int, lr: float, n_fake: int, dev: torch.device) -> float:
    g = torch.Generator().manual_seed(seed)  # crops, initialisation, interpolates: CPU, device-free
    gm = torch.Generator(device=dev)
    gm.manual_seed(seed + 1)
    train = [_one_hot(torch.from_numpy(np.ascontiguousarray(_halves(im)[fold]))) for im in ims]
    test = [_one_hot(torch.from_numpy(np.ascontiguousarray(_halves(im)[1 - fold]))) for im in ims]
    real_test = _grid_crops(test, patch).to(dev)
    with torch.no_grad():
        # simulated sections of the real sections' own shapes: the same grid positions are cut from them
        fake_train = [_one_hot(s.cpu()) for im in train
                      for s in model.sample_sections(tuple(im.shape[1:]), plane, batch=n_fake, generator=gm)]
        fake_test = _grid_crops([_one_hot(s.cpu()) for im in test
                                 for s in model.sample_sections(tuple(im.shape[1:]), plane, batch=n_fake,
                                                                generator=gm)], patch).to(dev)
    disc = Discriminator(patch, width, generator=g).to(dev)
    opt = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
    gp_gen = torch.Generator(device=dev)
    gp_gen.manual_seed(seed + 2)
    for _ in range(steps):
        real = random_crops(train, batch, patch, g).to(dev)
        fake = random_crops(fake_train, batch, patch, g).to(dev)
        loss, _ = critic_loss(disc, real, fake, kind, generator=gp_gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    d_real, d_fake = _scores(disc, real_test), _scores(disc, fake_test)
    if kind == "bce":
        return 2.0 * _auc(d_real, d_fake) - 1.0
    return float(d_real.mean() - d_fake.mean())


def _data_sections(data) -> tuple[list[np.ndarray], list[str]]:
    ims, planes = [], []
    for plane in data.planes:
        for im in data.images(plane):
            ims.append(im)
            planes.append(plane)
    return ims, planes


def check_critic_data(data) -> None:
    """Raise the critic's clear ``ValueError`` now if the calibration data's sections cannot feed it."""
    checked_critic_input(*_data_sections(data))


def data_critic_distance(data, model, seed: int = 0, **options) -> float:
    """:func:`critic_distance` of every section of a :class:`~napari_assb_twin.calibrate.data.CalibrationData`
    (the given ones and those cut from its volumes), each with its plane."""
    ims, planes = _data_sections(data)
    value = critic_distance(ims, model, planes, seed, **options)
    return value if math.isfinite(value) else 1.0
