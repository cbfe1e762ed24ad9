"""Foundation benchmark: realisations, all-pairs coverage functions and Gaussian fields (CPU).

Prints ONE Markdown table from one run on one machine, each case measured in its own subprocess so
that the peak RSS is per case:

(a) a three-phase realisation of ``reference-assb-cathode`` at 128^3 and 256^3 (median of a few
    runs after a warm-up);
(b) all-pairs directional coverage functions (6 pairs x 3 axes, non-periodic, r_max=64) of a 256^3
    realisation with :func:`napari_assb_twin.stats.coverage` versus
    ``porespy.metrics.two_point_correlation`` on ONE phase of the same volume (radial, its only
    output); our all-pairs radial + directional estimate is listed too (same kind of output);
(c) one 128^3 Gaussian field, ours (:func:`gaussian_field`, spectral) versus GSTools
    ``SRF(Gaussian(dim=3, var=1, len_scale=...))`` on a structured grid (default RandMeth).

Usage::

    python benchmarks/bench_foundation.py                  # full run, prints the table
    python benchmarks/bench_foundation.py --write-docs     # also rewrites docs/benchmarks.md "## Foundation"
    python benchmarks/bench_foundation.py --quick          # small sizes, for a smoke test (no PoreSpy/GSTools at full size)
    python benchmarks/bench_foundation.py --json raw.json  # keep all timings; --from-json raw.json re-renders them

torch uses as many threads as the machine has cores. The CPU may be shared with other jobs; the
table records the machine line and the 1-minute load average at the start and end of the run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from _machine import cpu_model, memory_gib  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
MODEL = "reference-assb-cathode"
#: our Gaussian correlation is exp(-(r/l)^2); GSTools' Gaussian is exp(-(pi/4) (r/L)^2), so the same
#: field has L = l * 2 / sqrt(pi)
LENGTH_SCALE_PX = 4.0
DOC_HEADER = "# Benchmarks\n\nWall-clock figures of the benchmark scripts in `benchmarks/`, one section per script.\n"


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


#: process CPU seconds (all threads) of every timed call in this process; on a shared machine CPU
#: time is less sensitive than wall time to other jobs competing for the cores
CPU_TIMES: list[float] = []


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of ``repeats`` calls after ``warmup`` calls (CPU times go to CPU_TIMES)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        CPU_TIMES.append(time.process_time() - c0)
    return statistics.median(times), times


def machine() -> dict[str, Any]:
    import torch

    cpu, mem_gb = cpu_model(), memory_gib()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gb, 1),
        "torch": torch.__version__,
        "torch_threads": os.cpu_count(),
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load1": os.getloadavg()[0],
    }


def _setup_torch() -> None:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)


def _volume(n: int):
    """Hard labels (numpy uint8) of the reference model at n^3, seed 0 (not timed)."""
    from napari_assb_twin.model import load_reference_model

    return load_reference_model(MODEL).generate((n, n, n), seed=0, device="cpu")


# ------------------------------------------------------------------------------------------------
# cases (each runs in its own process, prints one JSON line)
# ------------------------------------------------------------------------------------------------
def case_realisation(n: int, repeats: int) -> dict[str, Any]:
    import torch

    from napari_assb_twin.model import load_reference_model

    m = load_reference_model(MODEL)
    with torch.no_grad():
        med, times = timed(lambda: m.sample((n, n, n), seed=0), repeats)
        vol = m.sample((n, n, n), seed=0)
    fractions = torch.bincount(vol.reshape(-1).long(), minlength=3).double() / vol.numel()
    return {"seconds": med, "times": times, "fractions": fractions.tolist()}


def case_coverage_ours(n: int, r_max: int, repeats: int, radial: bool) -> dict[str, Any]:
    import torch

    from napari_assb_twin.stats.coverage import coverage

    vol = _volume(n)
    with torch.no_grad():
        med, times = timed(lambda: coverage(vol, r_max, periodic=False, radial=radial), repeats)
        res = coverage(vol, r_max, periodic=False, radial=radial)
    return {"seconds": med, "times": times, "C00_rmax": float(res.directional[0, 0, 0, -1])}


def case_coverage_porespy(n: int) -> dict[str, Any]:
    import porespy

    vol = _volume(n)
    im = vol == 0  # ONE phase (pore), as PoreSpy's two_point_correlation takes a binary image
    c0, t0 = time.process_time(), time.perf_counter()
    res = porespy.metrics.two_point_correlation(im)
    sec = time.perf_counter() - t0
    CPU_TIMES.append(time.process_time() - c0)
    return {"seconds": sec, "times": [sec], "porespy": porespy.__version__, "n_bins": len(res.distance)}


def case_field_ours(n: int, repeats: int) -> dict[str, Any]:
    import torch

    from napari_assb_twin.fields.covariance import ParametricCovariance
    from napari_assb_twin.fields.simulate import gaussian_field, make_generator

    cov = ParametricCovariance("gaussian", length_scale=LENGTH_SCALE_PX)
    g = make_generator(0)
    with torch.no_grad():
        med, times = timed(lambda: gaussian_field(cov, (n, n, n), batch=1, generator=g), repeats)
        f = gaussian_field(cov, (n, n, n), batch=1, generator=g)
    return {"seconds": med, "times": times, "var": float(f.var())}


def case_field_gstools(n: int) -> dict[str, Any]:
    import gstools as gs
    import numpy as np

    len_scale = LENGTH_SCALE_PX * 2.0 / np.sqrt(np.pi)
    model = gs.Gaussian(dim=3, var=1.0, len_scale=len_scale)
    srf = gs.SRF(model, seed=0)  # default generator: RandMeth (1000 modes)
    x = np.arange(n, dtype=float)
    c0, t0 = time.process_time(), time.perf_counter()
    f = srf.structured([x, x, x])
    sec = time.perf_counter() - t0
    CPU_TIMES.append(time.process_time() - c0)
    return {"seconds": sec, "times": [sec], "gstools": gs.__version__, "var": float(np.var(f))}


def run_case(name: str, args: argparse.Namespace) -> dict[str, Any]:
    _setup_torch()
    if name == "realisation":
        out = case_realisation(args.size, args.repeats)
    elif name == "coverage":
        out = case_coverage_ours(args.size, args.r_max, args.repeats, radial=False)
    elif name == "coverage-radial":
        out = case_coverage_ours(args.size, args.r_max, args.repeats, radial=True)
    elif name == "porespy":
        out = case_coverage_porespy(args.size)
    elif name == "field":
        out = case_field_ours(args.size, args.repeats)
    elif name == "gstools":
        out = case_field_gstools(args.size)
    else:
        raise SystemExit(f"unknown case {name!r}")
    out["peak_rss_mb"] = peak_rss_mb()
    out["cpu_seconds"] = statistics.median(CPU_TIMES) if CPU_TIMES else float("nan")
    return out


def subprocess_case(name: str, size: int, r_max: int = 0, repeats: int = 3) -> dict[str, Any]:
    """Run one case in a fresh interpreter so ru_maxrss is that case's own peak."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", name, "--size", str(size),
           "--r-max", str(r_max), "--repeats", str(repeats)]
    print(f"  running {name} {size}^3 ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"case {name} {size} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def reference_case(name: str, size: int) -> dict[str, Any]:
    """A third-party reference case; a failure (e.g. PoreSpy running out of memory: it needs about
    12 GiB at 256^3) is reported in the table instead of aborting the run."""
    try:
        return subprocess_case(name, size, repeats=1)
    except RuntimeError as exc:
        print(f"  {name} failed: {str(exc)[-500:]}", file=sys.stderr)
        return {"seconds": float("nan"), "times": [], "peak_rss_mb": float("nan"), "error": str(exc)[-500:]}


# ------------------------------------------------------------------------------------------------
# table
# ------------------------------------------------------------------------------------------------
def measure(quick: bool = False) -> dict[str, Any]:
    """Run every case (one subprocess each); raw results with the machine description."""
    mach = machine()
    small, big = (32, 64) if quick else (128, 256)
    r_max = 16 if quick else 64
    field_n = 32 if quick else 128
    res: dict[str, Any] = {}
    res["real_small"] = subprocess_case("realisation", small, repeats=5)
    res["real_big"] = subprocess_case("realisation", big, repeats=3)
    res["cov"] = subprocess_case("coverage", big, r_max, repeats=3)
    res["cov_rad"] = subprocess_case("coverage-radial", big, r_max, repeats=1)
    res["porespy"] = reference_case("porespy", big)
    res["field"] = subprocess_case("field", field_n, repeats=5)
    res["gstools"] = reference_case("gstools", field_n)
    mach["load1_end"] = os.getloadavg()[0]
    sizes = {"small": small, "big": big, "r_max": r_max, "field_n": field_n}
    return {"machine": mach, "sizes": sizes, "results": res}


def render(raw: dict[str, Any]) -> str:
    """The Markdown table and machine line of :func:`measure`'s results."""
    mach, res = raw["machine"], raw["results"]
    small, big, r_max, field_n = (raw["sizes"][k] for k in ("small", "big", "r_max", "field_n"))
    load_end = mach["load1_end"]

    def s(x: float) -> str:
        return "failed" if x != x else (f"{x:.3g}" if x < 10 else f"{x:.0f}")

    def ratio(x: float) -> str:
        return "-" if x != x else (f"{x:.1f}x" if x < 100 else f"{x:.0f}x")

    def mb(x: float) -> str:
        return "-" if x != x else f"{x:,.0f}"

    ok = lambda c: "yes" if c else "**no**"  # noqa: E731
    def c(x: float) -> str:  # a missing CPU time (older raw files) is not a failure
        return "-" if x != x else s(x)

    def cpu(key: str) -> float:
        return res[key].get("cpu_seconds", float("nan"))

    def row(label: str, ours: str, ref: str | None, target: str = "", met: Callable[[float], bool] | None = None) -> tuple:
        wall = res[ref]["seconds"] / res[ours]["seconds"] if ref else float("nan")
        cpu_r = cpu(ref) / cpu(ours) if ref else float("nan")
        return (
            label,
            s(res[ours]["seconds"]),
            s(res[ref]["seconds"]) if ref else "",
            ratio(wall) if ref else "",
            f"{c(cpu(ours))} / {c(cpu(ref))} ({ratio(cpu_r)})" if ref else c(cpu(ours)),
            f'{mb(res[ours]["peak_rss_mb"])} / {mb(res[ref]["peak_rss_mb"])}' if ref else mb(res[ours]["peak_rss_mb"]),
            target,
            "" if met is None else ok(met(wall if ref else res[ours]["seconds"])),
        )

    rows = [
        row(f"(a) realisation, {MODEL}, {small}^3", "real_small", None),
        row(f"(a) realisation, {MODEL}, {big}^3", "real_big", None, "<= 2 s", lambda t: t <= 2.0),
        row(f"(b) coverage, 6 pairs x 3 axes, directional, non-periodic, r_max={r_max}, {big}^3 "
            "(ref.: PoreSpy two_point_correlation, 1 phase, radial)", "cov", "porespy", ">= 20x", lambda r: r >= 20),
        row(f"(b') coverage, 6 pairs, radial + directional, non-periodic, r_max={r_max}, {big}^3 (same ref.)",
            "cov_rad", "porespy"),
        row(f"(c) Gaussian field {field_n}^3, spectral (ref.: GSTools SRF Gaussian, RandMeth)", "field", "gstools",
            ">= 100x", lambda r: r >= 100),
    ]
    head = ("case", "ours (s)", "reference (s)", "speed-up (wall)", "CPU s, ours / ref. (speed-up)",
            "peak RSS MiB (ours / ref.)", "target", "met")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    table = "\n".join(lines)
    info = (
        f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB; torch {mach['torch']} "
        f"({mach['torch_threads']} threads), Python {mach['python']}; {mach['date']}; "
        f"1-min load average {mach['load1']:.1f} at start, {load_end:.1f} at end "
        "(the machine is shared: the load says how many other jobs competed for the cores; CPU "
        "seconds, summed over threads, are less sensitive to that than wall time)."
    )
    return table + "\n\n" + info


def write_docs(section_body: str) -> None:
    """Replace (or append) the ``## Foundation`` section of docs/benchmarks.md, keeping the others."""
    text = DOCS.read_text() if DOCS.exists() else DOC_HEADER
    section = (
        "## Foundation\n\n"
        "`python benchmarks/bench_foundation.py --write-docs` (each case in its own process; medians of "
        "3-5 runs after a warm-up for ours, one run for PoreSpy and GSTools). Realisations are hard "
        "three-phase labels of the reference model (`sample`, seed 0). PoreSpy computes one phase's "
        "radial two-point function; we compute all 6 phase pairs along 3 axes (and, in (b'), also the "
        "radial average) of the same volume. Fields use the Gaussian correlation exp(-(r/4 px)^2) "
        "(GSTools len_scale = 4 * 2/sqrt(pi) px, the same function).\n\n" + section_body + "\n"
    )
    start = text.find("## Foundation")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[nxt + 1:] if nxt >= 0 else "")
    DOCS.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--r-max", type=int, default=64, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    p.add_argument("--json", type=Path, help="also save raw results (all timings) as JSON")
    p.add_argument("--from-json", type=Path, help="render a table saved with --json instead of measuring")
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args)))
        return 0
    if args.from_json:
        raw = json.loads(args.from_json.read_text())
    else:
        raw = measure(quick=args.quick)
    body = render(raw)
    print(body)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1))
    if args.write_docs:
        if raw["sizes"]["big"] != 256:
            raise SystemExit("--write-docs needs the full-size run (drop --quick)")
        write_docs(body)
        print(f"\nwritten to {DOCS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
