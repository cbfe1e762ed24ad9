"""Blockwise generation of fields and twins larger than memory.

A Gaussian field is white noise convolved with the square-root kernel of its covariance
(moving-average representation). Truncating the kernel at a radius where its remaining energy is
negligible makes every output block depend only on the noise in the block plus a halo, so blocks
are computed independently (dask, a cluster) with bounded memory. The noise is *counter-based*: the
value at a global voxel index depends only on (seed, stream, index) through fixed seeded noise
blocks, so any block can be computed without generating its neighbours' fields, and blocks are seamless. Blocks are computed on a fixed internal
tile grid, so the result is bit-identical whatever the output chunking.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..fields.covariance import Covariance
from ..fields.simulate import spectral_sqrt

_MASK64 = (1 << 64) - 1


NOISE_BLOCK = 32


def _splitmix64(x: int) -> int:
    """SplitMix64 finaliser (pure Python ints): decorrelates neighbouring block seeds."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _block_seed(seed: int, stream: int, index: Sequence[int]) -> int:
    h = _splitmix64(seed & _MASK64)
    for v in (stream, *index):
        h = _splitmix64(h ^ (v & _MASK64))
    return h & ((1 << 63) - 1)


def counter_normal(
    seed: int, stream: int, start: Sequence[int], shape: Sequence[int], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Standard normal noise at global voxel indices ``start + [0, shape)``, float32.

    The global grid is cut into fixed noise blocks of side :data:`NOISE_BLOCK`, each filled by its
    own generator seeded from (seed, stream, block index); so the value at a voxel depends only on
    (seed, stream, global index) and overlapping requests agree exactly. Coordinates may be negative.
    """
    b = NOISE_BLOCK
    lo = [s // b for s in start]
    hi = [(s + n - 1) // b for s, n in zip(start, shape)]
    nb = [h - l + 1 for l, h in zip(lo, hi)]
    buf = torch.empty((nb[0] * b, nb[1] * b, nb[2] * b), dtype=torch.float32, device=device)
    g = torch.Generator(device=device)
    for i in range(nb[0]):
        for j in range(nb[1]):
            for k in range(nb[2]):
                g.manual_seed(_block_seed(seed, stream, (lo[0] + i, lo[1] + j, lo[2] + k)))
                buf[i * b : (i + 1) * b, j * b : (j + 1) * b, k * b : (k + 1) * b] = torch.randn(
                    (b, b, b), generator=g, device=device
                )
    off = [s - l * b for s, l in zip(start, lo)]
    return buf[off[0] : off[0] + shape[0], off[1] : off[1] + shape[1], off[2] : off[2] + shape[2]]


def truncated_kernel(cov: Covariance, tol: float = 1e-4, max_radius: int = 64) -> torch.Tensor:
    """Square-root kernel k of ``cov`` (so that k * white noise has covariance ~ rho), truncated.

    The kernel is computed on a periodic grid of side ``4 * max_radius``, cropped to the smallest
    cube of radius R whose outside holds less than ``tol`` of the energy, and renormalised to unit
    energy so the field keeps unit variance.
    """
    n = 4 * max_radius
    with torch.no_grad():
        k = torch.fft.ifftn(spectral_sqrt(cov, (n, n, n))).real
    k = torch.fft.fftshift(k)
    c = n // 2
    energy = float((k.double() ** 2).sum())
    radius = max_radius
    for r in range(1, max_radius + 1):
        inner = float((k[c - r : c + r + 1, c - r : c + r + 1, c - r : c + r + 1].double() ** 2).sum())
        if inner >= (1 - tol) * energy:
            radius = r
            break
    k = k[c - radius : c + radius + 1, c - radius : c + radius + 1, c - radius : c + radius + 1]
    return (k / torch.sqrt((k.double() ** 2).sum()).float()).contiguous()


class BlockwiseField:
    """Gaussian fields with a fixed covariance, computable on any block of an unbounded grid.

    Parameters
    ----------
    cov
        Covariance in px.
    tile
        Side of the internal compute tiles (fixed, independent of the output chunking).
    tol
        Kernel truncation tolerance (fraction of kernel energy dropped).
    """

    def __init__(self, cov: Covariance, tile: int = 96, tol: float = 1e-4) -> None:
        self.kernel = truncated_kernel(cov, tol)
        self.radius = (self.kernel.shape[0] - 1) // 2
        self.tile = int(tile)
        n = self.tile + 2 * self.radius
        self._fft_shape = (n, n, n)
        pad = torch.zeros(self._fft_shape)
        k = self.kernel.shape[0]
        pad[:k, :k, :k] = torch.flip(self.kernel, dims=(0, 1, 2))
        self._kernel_fft = torch.fft.fftn(pad)

    def tile_fields(self, seed: int, streams: Sequence[int], tile_index: Sequence[int]) -> torch.Tensor:
        """Fields on one internal tile, shape ``(len(streams), tile, tile, tile)``.

        Pairs of streams share one complex FFT convolution (real and imaginary parts).
        """
        t, r = self.tile, self.radius
        start = [i * t - r for i in tile_index]
        out = []
        for j in range(0, len(streams), 2):
            pair = streams[j : j + 2]
            noise = counter_normal(seed, pair[0], start, self._fft_shape).to(torch.complex64)
            if len(pair) == 2:
                noise = noise + 1j * counter_normal(seed, pair[1], start, self._fft_shape)
            conv = torch.fft.ifftn(torch.fft.fftn(noise) * self._kernel_fft)
            # circular convolution with the flipped kernel at the origin: valid part starts at 2r
            valid = conv[2 * r : 2 * r + t, 2 * r : 2 * r + t, 2 * r : 2 * r + t]
            out.append(valid.real)
            if len(pair) == 2:
                out.append(valid.imag)
        return torch.stack(out)

    def region(self, seed: int, streams: Sequence[int], start: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
        """Fields on an arbitrary box, assembled from the fixed tiles (bit-identical across boxes)."""
        t = self.tile
        out = torch.empty((len(streams), *shape))
        lo = [s // t for s in start]
        hi = [(s + n - 1) // t for s, n in zip(start, shape)]
        for tz in range(lo[0], hi[0] + 1):
            for ty in range(lo[1], hi[1] + 1):
                for tx in range(lo[2], hi[2] + 1):
                    block = self.tile_fields(seed, streams, (tz, ty, tx))
                    src, dst = [], []
                    for ti, s, n in zip((tz, ty, tx), start, shape):
                        a = max(ti * t, s)
                        b = min((ti + 1) * t, s + n)
                        src.append(slice(a - ti * t, b - ti * t))
                        dst.append(slice(a - s, b - s))
                    out[(slice(None), *dst)] = block[(slice(None), *src)]
        return out


def _check_3d(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"blockwise generation needs a 3D shape with positive sides, got {shape}")
    return shape  # type: ignore[return-value]


class BlockwiseTwin:
    """Blockwise hard labels of a :class:`~napari_assb_twin.model.ThreePhaseModel` (no periodicity).

    Use :meth:`block` for one box, :meth:`to_dask` for a lazy array and :meth:`to_zarr` to write a
    chunked Zarr array with bounded memory.
    """

    def __init__(self, model, seed: int = 0, tile: int = 96, tol: float = 1e-4) -> None:
        self.model = model.on_device("cpu")  # a copy when the caller's model is elsewhere, never moved
        from ..checks import check_seed

        self.seed = check_seed(seed)  # the one seed check (1.5 is not truncated to 1, -1 not wrapped)
        self.fields = {k: BlockwiseField(f.covariance, tile, tol) for k, f in self.model.fields.items()}
        # disjoint noise streams per Gaussian component of each field
        n = {k: f.n_components for k, f in self.model.fields.items()}
        self.streams = {"f1": list(range(n["f1"])), "f2": list(range(100, 100 + n["f2"]))}

    def block(self, start: Sequence[int], shape: Sequence[int]) -> np.ndarray:
        """Hard ``uint8`` labels of the box ``start + [0, shape)``."""
        values = {}
        with torch.no_grad():
            for key, bf in self.fields.items():
                components = bf.region(self.seed, self.streams[key], start, shape)
                values[key] = self.model.fields[key].from_components(components)
            return self.model.labels_from_fields(values["f1"], values["f2"]).numpy()

    def to_dask(self, shape: Sequence[int], chunks: int | Sequence[int] = 128):
        """Lazy ``dask.array`` of the twin; each chunk is computed independently."""
        import dask.array as da

        shape = _check_3d(shape)
        template = da.zeros(shape, chunks=chunks, dtype=np.uint8)

        def _fill(block, block_info=None):
            loc = block_info[None]["array-location"]
            return self.block([a for a, _ in loc], [b - a for a, b in loc])

        return template.map_blocks(_fill, dtype=np.uint8)

    def to_zarr(self, path, shape: Sequence[int], chunks: int | Sequence[int] = 128, overwrite: bool = False):
        """Write the twin to a chunked Zarr array at ``path`` (refuses to overwrite unless asked)."""
        import os

        import zarr

        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (--force) to replace it")
        arr = self.to_dask(shape, chunks)
        arr.to_zarr(str(path), overwrite=overwrite)
        z = zarr.open_array(str(path), mode="r+")
        z.attrs.update(
            {
                "voxel_size": self.model.voxel_size,
                "unit": self.model.unit,
                "seed": self.seed,
                "phases": {"0": "pore", "1": "active", "2": "electrolyte"},
            }
        )
        return z
