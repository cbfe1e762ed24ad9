"""Parameter sweeps for structure-property studies (METHOD.md section 8), run on dask, resumable.

A sweep varies interpretable model parameters (keys of ``ThreePhaseModel.interpretable()``, lengths
in the model's physical unit) over a full grid, generates ``R`` realisations per grid point, and
computes every descriptor (and TauFactor transport) of each twin. One *case* is one grid point and
one realisation; its seed is derived from ``(seed, parameter values, realisation)``, so adding grid
values later does not change the twins of existing cases.

Each finished case is written atomically to ``DIR/cases/<case-id>.json`` the moment it finishes;
a re-run skips cases whose file exists (the case id hashes the model, parameters, shape, seed,
realisation and descriptor options, so a changed setting never reuses stale results). The final
table ``DIR/results.csv`` (and ``results.parquet`` when pyarrow is installed) is assembled from
those files, so an interrupted sweep loses at most the cases that were running. ``DIR/summary.csv``
holds one row per grid point: for every property its mean over the point's realisations and the 95 %
confidence interval of the model's mean (``<property>.mean`` / ``.lo`` / ``.hi``, Student t with
``R - 1`` dof, the rule of :mod:`.intervals`; no interval for one realisation), and the plots draw
those intervals as whiskers.

Scheduling: a ``dask.distributed`` scheduler address (``tcp://host:8786``), a local
``distributed.LocalCluster`` when ``distributed`` is installed, else a local thread pool
(``"threads"``), or one case after another (``"sync"``). :func:`iter_sweep` is the job form (progress
events); :func:`run_sweep` drives it to the end.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_path, atomic_write_text

__all__ = [
    "VaryAxis",
    "SweepCase",
    "SweepResult",
    "parse_vary",
    "build_grid",
    "evaluate_case",
    "SweepCaseError",
    "SweepPlan",
    "check_sweep",
    "finish_sweep",
    "iter_cases",
    "iter_sweep",
    "plan_sweep",
    "run_sweep",
    "assemble_table",
    "plot_sweep",
    "summarise",
]

#: Most cases one sweep may hold (grid points x realisations): a typo such as ``:1000000`` is refused
#: with the count and an estimate instead of allocating the grid and queueing years of work.
MAX_SWEEP_CASES: int = 10_000
#: Rough CPU seconds per 64^3 case with descriptors and transport (benchmarks: ~10-30 s); scales with voxels.
_CASE_SECONDS_64 = 20.0

#: How long to wait for a remote dask scheduler before giving up.
CONNECT_TIMEOUT: str = "20s"

#: Metric columns get this prefix-free form: ``<descriptor>.<phase>`` or ``<descriptor>.<phase>.axis<k>``.
_DERIVED_KEYS = ("correlation_length",)


@dataclass(frozen=True)
class VaryAxis:
    """One swept parameter: its key and the values it takes (physical units)."""

    key: str
    values: tuple[float, ...]


def parse_vary(text: str) -> VaryAxis:
    """Parse ``KEY=START:STOP:N`` (N evenly spaced values, ends included), ``KEY=V1,V2,...`` or ``KEY=V``.

    Raises
    ------
    ValueError
        With the accepted syntax when ``text`` does not follow it.
    """
    syntax = "use KEY=START:STOP:N (e.g. electrolyte_fraction=0.2:0.4:5), KEY=V1,V2,... or KEY=V"
    if not isinstance(text, str) or text.count("=") != 1:
        raise ValueError(f"bad --vary {text!r}: {syntax}")
    key, spec = (s.strip() for s in text.split("="))
    if not key or not spec:
        raise ValueError(f"bad --vary {text!r}: {syntax}")

    def num(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise ValueError(f"bad --vary {text!r}: {s.strip()!r} is not a number; {syntax}") from None
        if not math.isfinite(v):
            raise ValueError(f"bad --vary {text!r}: values must be finite")
        return v

    if ":" in spec:
        parts = spec.split(":")
        if len(parts) != 3:
            raise ValueError(f"bad --vary {text!r}: a range needs exactly START:STOP:N; {syntax}")
        start, stop = num(parts[0]), num(parts[1])
        try:
            n = int(parts[2])
        except ValueError:
            raise ValueError(f"bad --vary {text!r}: N = {parts[2]!r} must be a positive integer") from None
        if n < 1:
            raise ValueError(f"bad --vary {text!r}: N must be at least 1, got {n}")
        if n > MAX_SWEEP_CASES:
            raise ValueError(f"bad --vary {text!r}: N = {n} values, more than one sweep may hold "
                             f"({MAX_SWEEP_CASES} cases in all); give fewer values")
        if n == 1 and start != stop:
            raise ValueError(f"bad --vary {text!r}: N = 1 needs START == STOP (or give one value, KEY=V)")
        values = tuple(float(v) for v in np.linspace(start, stop, n))
    else:
        values = tuple(num(s) for s in spec.split(","))
    if len(set(values)) != len(values):
        raise ValueError(f"bad --vary {text!r}: repeated values {values}")
    return VaryAxis(key, tuple(round(v, 12) for v in values))


@dataclass(frozen=True)
class SweepCase:
    """One twin to generate: grid point ``point``, realisation ``realisation``."""

    case_id: str
    point: int
    realisation: int
    params: dict[str, float]
    seed: int


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _check_keys(model, vary: Sequence[VaryAxis]) -> None:
    known = model.interpretable()
    keys = [v.key for v in vary]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise ValueError(f"parameter(s) {', '.join(sorted(dup))} given in more than one --vary")
    settable = [k for k in known if not any(d in k for d in _DERIVED_KEYS)]
    for k in keys:
        if any(d in k for d in _DERIVED_KEYS) and k in known:
            raise ValueError(f"{k} is derived from other parameters and cannot be varied; vary one of: {', '.join(settable)}")
        if k not in known:
            raise ValueError(f"unknown parameter {k!r} for this model; vary one of: {', '.join(settable)}")
    fr = [k for k in keys if k.endswith("_fraction")]
    if len(fr) > 1:
        raise ValueError(
            f"vary at most one volume fraction ({', '.join(fr)} given): changing one rescales the other two "
            "so that they sum to 1"
        )


def build_grid(
    model, vary: Sequence[VaryAxis], realisations: int, shape: Sequence[int], seed: int = 0, options: Mapping[str, Any] | None = None
) -> list[SweepCase]:
    """Every case of the full grid ``vary[0] x vary[1] x ... x realisations``.

    The case id hashes the model file, the parameter values, shape, seed, realisation and
    ``options`` (descriptor settings), so results are only reused for identical work.

    Raises
    ------
    ValueError
        Unknown / derived / repeated parameter keys, a non-positive number of realisations or a bad shape.
    """
    from ..model import model_to_dict

    if isinstance(realisations, bool) or int(realisations) != realisations or realisations < 1:
        raise ValueError(f"realisations must be a positive integer, got {realisations!r}")
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3) or min(shape) < 4:
        raise ValueError(f"shape must be 3 (or 2) sides of at least 4 voxels, got {shape}")
    _check_keys(model, vary)
    model_fp = _fingerprint({k: v for k, v in model_to_dict(model).items() if k != "provenance"})
    opts = dict(options or {})
    cases = []
    n_cases = math.prod(len(v.values) for v in vary) * int(realisations)
    if n_cases > MAX_SWEEP_CASES:
        hours = n_cases * _CASE_SECONDS_64 * math.prod(shape) / 64**3 / 3600
        raise ValueError(
            f"the sweep holds {' x '.join(str(len(v.values)) for v in vary)} grid points x {int(realisations)} "
            f"realisation(s) = {n_cases} cases of {' x '.join(map(str, shape))} voxels (roughly {hours:,.0f} CPU-hours); "
            f"at most {MAX_SWEEP_CASES} per sweep: give fewer --vary values or realisations")
    combos = list(itertools.product(*[v.values for v in vary])) if vary else [()]
    for point, values in enumerate(combos):
        params = {v.key: float(x) for v, x in zip(vary, values)}
        p_fp = _fingerprint(params)
        for r in range(int(realisations)):
            # a seed from (seed, parameter values, realisation): stable when grid values are added
            ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(p_fp[:8], 16), r])
            case_seed = int(ss.generate_state(1, dtype=np.uint64)[0] % (2**63 - 1))
            cid = _fingerprint({"model": model_fp, "params": params, "shape": shape, "seed": int(seed),
                                "realisation": r, "options": opts})[:16]
            cases.append(SweepCase(f"case-{cid}", point, r, params, case_seed))
    return cases


def _metric_name(rec: Mapping[str, Any]) -> str:
    ax = rec.get("axis")
    return f"{rec['descriptor']}.{rec['phase']}" + ("" if ax is None else f".axis{int(ax)}")


def evaluate_case(model_dict: dict, params: Mapping[str, float], shape: Sequence[int], seed: int,
                  transport: bool = True, geometry: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Generate one twin and compute its descriptors (the unit of work sent to dask workers).

    Returns ``{"metrics": {name: value}, "fractions": ..., "seconds": ...}`` with plain JSON types.
    """
    from ..model import model_from_dict
    from ..stats.descriptors import describe

    t0 = time.perf_counter()
    model = model_from_dict(model_dict)
    if params:
        model = model.with_updates(dict(params))
    vol = model.generate(tuple(int(n) for n in shape), seed=int(seed), device=device)
    recs = describe(vol, voxel_size=model.voxel_size, unit=model.unit, transport=transport and vol.ndim == 3,
                    device=device, geometry=geometry)
    metrics = {_metric_name(r): (None if not math.isfinite(r["value"]) else float(r["value"])) for r in recs}
    # JSON has no inf: keep non-percolation visible as a string marker instead of null
    for r in recs:
        if math.isinf(r["value"]):
            metrics[_metric_name(r)] = "inf" if r["value"] > 0 else "-inf"
    units = {_metric_name(r): r["unit"] for r in recs}
    return {"metrics": metrics, "units": units, "seconds": time.perf_counter() - t0}


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True))


def _case_record(case: SweepCase, result: Mapping[str, Any]) -> dict[str, Any]:
    return {"case_id": case.case_id, "point": case.point, "realisation": case.realisation, "seed": case.seed,
            "params": case.params, **result}


def _run_and_store(case_dir: str, case: SweepCase, model_dict: dict, shape, transport: bool, geometry: bool, device: str):
    """Worker task: evaluate a case and (same file system) write its JSON; returns the record."""
    # looked up at call time so tests can count / interrupt calls by patching the module attribute
    res = sys.modules[__name__].evaluate_case(model_dict, case.params, shape, case.seed, transport, geometry, device)
    rec = _case_record(case, res)
    if case_dir:
        _write_json(Path(case_dir) / f"{case.case_id}.json", rec)
    return rec


@dataclass
class SweepResult:
    """Outcome of :func:`run_sweep`."""

    table: Any  # pandas.DataFrame
    out: Path
    n_cases: int
    n_computed: int
    n_reused: int
    scheduler: str
    files: dict[str, Path] = field(default_factory=dict)
    summary: Any = None  # pandas.DataFrame: per grid point, mean and 95 % interval (summarise)


def _value(v: Any) -> float:
    if v is None:
        return float("nan")
    if isinstance(v, str):
        return float(v)  # "inf" / "-inf"
    return float(v)


def assemble_table(cases: Sequence[SweepCase], case_dir: Path, vary_keys: Sequence[str]):
    """The results table (one row per case, grid order) from the case files; missing cases skipped."""
    import pandas as pd

    rows = []
    for c in cases:
        rec = _read_case(Path(case_dir) / f"{c.case_id}.json")
        if rec is None:
            continue
        row = {"case_id": c.case_id, "point": c.point, "realisation": c.realisation, "seed": c.seed}
        row.update({k: rec["params"].get(k, float("nan")) for k in vary_keys})
        row.update({k: _value(v) for k, v in rec["metrics"].items()})
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def summarise(table, vary_keys: Sequence[str]):
    """One row per grid point: its parameters, ``realisations`` (how many cases it has) and for every
    property ``<property>.mean``, ``.lo``, ``.hi`` (:func:`.intervals.mean_interval`: the 95 %
    confidence interval of the model's mean over the point's realisations; NaN for one, or where a
    realisation's value is not finite)."""
    import pandas as pd

    from .intervals import mean_interval

    fixed = {"case_id", "point", "realisation", "seed", *vary_keys}
    metrics = [c for c in table.columns if c not in fixed]
    rows = []
    for point, sub in table.groupby("point", sort=True):
        row: dict[str, Any] = {"point": int(point), **{k: float(sub[k].iloc[0]) for k in vary_keys},
                               "realisations": len(sub)}
        for m in metrics:
            mean, lo, hi, _ = mean_interval(sub[m].to_numpy(dtype=float))
            row.update({f"{m}.mean": mean, f"{m}.lo": lo, f"{m}.hi": hi})
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def _read_case(path: Path) -> dict | None:
    """A finished case's record; None when absent or unreadable (then it is computed again)."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and {"params", "metrics"} <= set(rec) else None


def _make_client(scheduler: str | None, n_workers: int | None):
    """(client or None, description) for the requested scheduler."""
    if scheduler not in _IN_PROCESS:
        try:
            from distributed import Client
        except ImportError:
            raise ValueError(
                f"--scheduler {scheduler} needs the dask.distributed package: pip install distributed"
            ) from None
        try:
            return Client(scheduler, timeout=CONNECT_TIMEOUT), f"dask.distributed at {scheduler}"
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
    if scheduler in (None, "", "local"):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            return None, "local threads (install 'distributed' for a local cluster)"
        n = n_workers or _default_workers()
        # processes, one thread each: descriptors hold the GIL part of the time; torch threads per worker = 1.
        # Workers' own logs are silenced below ERROR: a failed case reaches the user as one line (_case_error).
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR, env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        return Client(cluster), f"dask.distributed LocalCluster ({n} workers x 1 thread)"
    if scheduler in ("sync", "synchronous"):
        return None, "synchronous (one case after another)"
    return None, f"local threads ({n_workers or _default_workers()})"


#: Scheduler names that run in this process (anything else is a dask.distributed address).
_IN_PROCESS = (None, "", "local", "threads", "sync", "synchronous")


def check_scheduler(scheduler: str | None) -> str | None:
    """``scheduler`` when it is an in-process name or a ``[protocol://]host:port`` address, else a ``ValueError``
    (checked before planning, where dask would say "missing port number" later)."""
    import re

    if scheduler in _IN_PROCESS:
        return scheduler
    text = str(scheduler)
    m = re.fullmatch(r"(?:(tcp|tls|inproc|ucx|ws|wss)://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})", text)
    if m is None or not 0 < int(m.group(3)) < 65536:
        raise ValueError(f"--scheduler {text!r} is not a dask.distributed address: give tcp://HOST:PORT (e.g. "
                         "tcp://10.0.0.5:8786), or local, threads or sync")
    return scheduler


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _close_client(client, scheduler: str | None) -> None:
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None and scheduler in (None, "", "local"):
        # a loaded machine makes the nanny kill idle workers after its 4 s grace: not an error
        nanny_log = logging.getLogger("distributed.nanny")
        level = nanny_log.level
        nanny_log.setLevel(logging.ERROR)
        try:
            cluster.close()
        finally:
            nanny_log.setLevel(level)


class SweepCaseError(RuntimeError):
    """A case failed on a dask worker; the message is one line naming the case and the cause."""


def _case_error(case: SweepCase, exc: BaseException) -> SweepCaseError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    params = ", ".join(f"{k}={v:g}" for k, v in case.params.items()) or "base model"
    return SweepCaseError(f"sweep case {case.case_id} ({params}, realisation {case.realisation}) failed on a worker: "
                          f"{type(exc).__name__}{': ' + first if first else ''}")


@dataclass
class SweepPlan:
    """Everything a sweep computes, decided before any case runs (see :func:`plan_sweep`)."""

    out: Path
    vary: list[VaryAxis]
    cases: list[SweepCase]
    todo: list[SweepCase]
    model_dict: dict
    shape: tuple[int, ...]
    options: dict[str, bool]
    notes: list[str] = field(default_factory=list)

    @property
    def case_dir(self) -> Path:
        return self.out / "cases"


def plan_sweep(model, vary: Sequence[VaryAxis | str], realisations: int, shape: Sequence[int], out: str | os.PathLike,
               seed: int, transport: bool, geometry: bool, device: str = "cpu", force: bool = False) -> SweepPlan:
    """The grid, checked (:func:`check_sweep`) before anything is written; the cases still to compute
    (unreadable case files are computed again); and ``sweep.json``.

    ``out`` holding another sweep (another grid, shape, seed, model or options) is refused unless
    ``force`` (the overwrite rule of every command); the same sweep resumes."""
    from ..model import model_to_dict

    vary = [parse_vary(v) if isinstance(v, str) else v for v in vary]
    out = Path(out)
    options = {"transport": bool(transport), "geometry": bool(geometry)}
    cases = build_grid(model, vary, realisations, shape, seed, options)
    check_sweep(model, cases, device)
    model_dict = model_to_dict(model)
    spec = {
        "vary": {v.key: list(v.values) for v in vary}, "realisations": int(realisations), "shape": list(map(int, shape)),
        "seed": int(seed), "options": options, "model": model_dict,
        "cases": [{"case_id": c.case_id, "point": c.point, "realisation": c.realisation, "params": c.params,
                   "seed": c.seed} for c in cases],
    }
    check_sweep_folder(out, spec, force)
    case_dir = out / "cases"
    case_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out / "sweep.json", spec)
    todo, notes = [], []
    for c in cases:
        path = case_dir / f"{c.case_id}.json"
        if not path.exists():
            todo.append(c)
        elif _read_case(path) is None:
            notes.append(f"case file {path} is unreadable (truncated?): computing that case again")
            todo.append(c)
    return SweepPlan(out, vary, cases, todo, model_dict, tuple(int(n) for n in shape), options, notes)


def check_sweep_folder(out: str | os.PathLike, spec: Mapping[str, Any], force: bool = False) -> Path:
    """Refuse an ``out`` that is a file, or that holds another sweep's results without ``force``.

    The same sweep (same cases) in ``out`` is resumed; another one would have its ``results.csv``
    replaced, so that needs ``force`` as every command's overwrite does.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; a sweep writes a folder (cases/, sweep.json, results.csv): "
                                 "give a folder name")
    old_path = out / "sweep.json"
    if not old_path.exists() or force:
        if not old_path.exists() and (out / "results.csv").exists() and not force:
            raise FileExistsError(f"{out} already holds results.csv; choose another --out or pass --force to replace it")
        return out
    try:
        old = json.loads(old_path.read_text(encoding="utf-8"))
        same = [c["case_id"] for c in old.get("cases", [])] == [c["case_id"] for c in spec["cases"]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        same = False
    if not same:
        raise FileExistsError(
            f"{out} holds another sweep ({old_path.name}: a different grid, shape, seed, model or options); its "
            "results.csv would be replaced: choose another --out, or pass --force to replace it "
            "(the same command resumes an interrupted sweep)")
    return out


def check_sweep(model, cases: Sequence[SweepCase], device: str) -> None:
    """Refuse, before any cluster starts, parameter values the model rejects and an absent device."""
    from ..devices import resolve_device

    resolve_device(device)
    seen = set()
    for c in cases:
        key = tuple(sorted(c.params.items()))
        if key in seen or not c.params:
            continue
        seen.add(key)
        try:
            model.with_updates(dict(c.params))
        except (ValueError, TypeError) as exc:
            shown = ", ".join(f"{k}={v:g}" for k, v in c.params.items())
            raise ValueError(f"--vary values {shown} are not a valid model: {exc}") from None


def iter_cases(plan: SweepPlan, scheduler: str | None = None, n_workers: int | None = None,
               device: str = "cpu") -> Generator[tuple[int, int, str], None, str]:
    """Compute the plan's missing cases; yields ``(done, total, case_id)``, returns the scheduler's description."""
    if not plan.todo:
        return "nothing to compute"
    client, description = _make_client(scheduler, n_workers)
    args = (plan.model_dict, plan.shape, plan.options["transport"], plan.options["geometry"], device)
    total = len(plan.todo)
    try:
        if client is not None:
            from distributed import as_completed

            futs = {client.submit(_run_and_store, "", c, *args, key=f"sweep-{c.case_id}", pure=False): c
                    for c in plan.todo}
            for k, fut in enumerate(as_completed(futs), 1):
                case = futs[fut]
                try:
                    rec = fut.result()
                except Exception as exc:  # noqa: BLE001 - one line naming the case, not a remote traceback
                    client.cancel(list(futs))
                    raise _case_error(case, exc) from None
                # the client writes the file: a remote worker may not share this file system
                _write_json(plan.case_dir / f"{case.case_id}.json", rec)
                yield k, total, case.case_id
        elif scheduler in ("sync", "synchronous"):
            for k, case in enumerate(plan.todo, 1):
                _run_and_store(str(plan.case_dir), case, *args)
                yield k, total, case.case_id
        else:
            from concurrent.futures import ThreadPoolExecutor, as_completed

            with ThreadPoolExecutor(max_workers=n_workers or _default_workers()) as pool:
                futs = {pool.submit(_run_and_store, str(plan.case_dir), c, *args): c for c in plan.todo}
                try:
                    for k, fut in enumerate(as_completed(futs), 1):
                        fut.result()
                        yield k, total, futs[fut].case_id
                finally:
                    for f in futs:
                        f.cancel()
    finally:
        if client is not None:
            _close_client(client, scheduler)
    return description


def finish_sweep(plan: SweepPlan, description: str, plots: bool = True) -> SweepResult:
    """Assemble the table from the case files and write ``results.csv`` (+ parquet) and the plots."""
    keys = [v.key for v in plan.vary]
    table = assemble_table(plan.cases, plan.case_dir, keys)
    out = plan.out
    files = {"results.csv": out / "results.csv", "summary.csv": out / "summary.csv"}
    with atomic_path(out / "results.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.10g")
    summary = summarise(table, keys) if len(table) else None
    with atomic_path(out / "summary.csv") as tmp:
        (summary if summary is not None else table).to_csv(tmp, index=False, float_format="%.10g")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        pass
    else:
        with atomic_path(out / "results.parquet") as tmp:
            table.to_parquet(tmp, index=False)
        files["results.parquet"] = out / "results.parquet"
    if plots and keys and len(table):
        files.update(plot_sweep(table, keys, out))
    n_done = len(plan.todo)
    return SweepResult(table, out, len(plan.cases), n_done, len(plan.cases) - n_done, description, files, summary)


def iter_sweep(
    model,
    vary: Sequence[VaryAxis | str],
    realisations: int = 1,
    shape: Sequence[int] = (64, 64, 64),
    out: str | os.PathLike = "sweep",
    seed: int = 0,
    transport: bool = True,
    geometry: bool = True,
    device: str = "cpu",
    scheduler: str | None = None,
    n_workers: int | None = None,
    plots: bool = True,
    force: bool = False,
) -> Generator[Any, None, SweepResult]:
    """Run (or resume) a sweep as a job: yields :class:`~napari_assb_twin.jobs.events.JobProgress`.

    Parameters
    ----------
    model
        The base :class:`~napari_assb_twin.model.ThreePhaseModel`.
    vary
        :class:`VaryAxis` objects or ``"KEY=START:STOP:N"`` strings (see :func:`parse_vary`).
    realisations
        Twins per grid point.
    shape
        Twin size in voxels (z, y, x).
    out
        Output folder: ``cases/`` (one JSON per finished case), ``sweep.json`` (the grid),
        ``results.csv`` (+ ``results.parquet`` with pyarrow) and ``sweep_<key>.png`` plots.
    seed
        Base seed; case seeds derive from it, the parameter values and the realisation.
    transport, geometry, device
        Descriptor options (TauFactor on ``device``; geodesic tortuosity / constrictivity).
    force
        Replace another sweep's results in ``out`` (without it such a folder is refused; the same
        sweep resumes).
    force
        Replace another sweep's results in ``out`` (without it such a folder is refused; the same
        sweep resumes).
    scheduler
        ``None``/``"local"`` (LocalCluster if ``distributed`` is installed, else threads), ``"threads"``,
        ``"sync"``, or a ``dask.distributed`` scheduler address ``tcp://host:port``.
    n_workers
        Workers of the local cluster or thread pool (default ``min(4, cpu count)``).
    plots
        Write the property-vs-parameter plots.

    Stages: ``"note"`` (e.g. an unreadable case file computed again), ``"sweep"`` per finished
    case (``done`` counts reused cases too), ``"tables"``.
    """
    from ..events import JobProgress

    check_scheduler(scheduler)
    plan = plan_sweep(model, vary, realisations, shape, out, seed, transport, geometry, device, force)
    for note in plan.notes:
        yield JobProgress("note", message=note)
    reused = len(plan.cases) - len(plan.todo)
    yield JobProgress("sweep", reused, len(plan.cases), f"{reused} case(s) reused from {plan.case_dir}")
    cases = iter_cases(plan, scheduler, n_workers, device)
    while True:
        try:
            done, _, case_id = next(cases)
        except StopIteration as stop:
            description = stop.value
            break
        yield JobProgress("sweep", reused + done, len(plan.cases), case_id)
    yield JobProgress("tables", message=f"writing {plan.out / 'results.csv'}")
    return finish_sweep(plan, description, plots)


def run_sweep(model, vary: Sequence[VaryAxis | str], *, progress: bool | Callable[[int, int], None] | None = None,
              **settings: Any) -> SweepResult:
    """Run (or resume) a parameter sweep and write its table and plots into ``out``.

    Parameters
    ----------
    model, vary, **settings
        As for :func:`iter_sweep` (``realisations``, ``shape``, ``out``, ``seed``, ``transport``,
        ``geometry``, ``device``, ``scheduler``, ``n_workers``, ``plots``).
    progress
        A callable ``progress(done, total)`` called after each case (``True`` / ``False``: none;
        the CLI draws its bar from :func:`iter_sweep`'s events).

    Returns
    -------
    SweepResult
    """
    from ..events import run_job

    report = progress if callable(progress) else None

    def on_event(event) -> None:
        if report is not None and event.stage == "sweep" and event.done:
            report(event.done, event.total)

    return run_job(iter_sweep(model, vary, **settings), on_event)


#: Properties plotted against each swept parameter (those present in the table).
PLOT_METRICS: tuple[str, ...] = (
    "volume_fraction.{p}", "specific_surface_area.{p}", "connected_fraction.{p}.axis0",
    "geodesic_tortuosity.{p}.axis0", "tau_factor.{p}.axis0", "effective_diffusivity.{p}.axis0",
)


def plot_sweep(table, keys: Sequence[str], out: Path) -> dict[str, Path]:
    """``sweep_<key>.png``: each property (mean over realisations, whiskers: the 95 % interval of the
    model's mean, :func:`summarise`) vs one parameter.

    With several swept parameters, one line per combination of the others.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..phases import PHASE_HEX, PHASE_NAMES
    from .intervals import mean_interval

    files = {}
    for key in keys:
        others = [k for k in keys if k != key]
        metrics = [m for m in PLOT_METRICS if any(m.format(p=p) in table.columns for p in PHASE_NAMES)]
        if not metrics:
            continue
        ncol = 3
        nrow = math.ceil(len(metrics) / ncol)
        fig = Figure(figsize=(4.2 * ncol, 3.2 * nrow), layout="constrained")
        FigureCanvasAgg(fig)
        axs = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
        groups = list(table.groupby(others)) if others else [((), table)]
        styles = ["-", "--", ":", "-."]
        for ax, m in zip(axs, metrics):
            for gi, (gval, sub) in enumerate(groups):
                gval = gval if isinstance(gval, tuple) else (gval,)
                for p, name in enumerate(PHASE_NAMES):
                    col = m.format(p=name)
                    if col not in sub.columns:
                        continue
                    vals = sub[col].replace([np.inf, -np.inf], np.nan)
                    st = vals.groupby(sub[key]).apply(lambda v: mean_interval(v.to_numpy(dtype=float))[:3])
                    mean = np.array([t[0] for t in st], dtype=float)
                    if np.isnan(mean).all():
                        continue
                    lo = np.array([t[1] for t in st], dtype=float)
                    hi = np.array([t[2] for t in st], dtype=float)
                    err = np.nan_to_num(np.vstack([mean - lo, hi - mean]), nan=0.0)
                    lab = name if gi == 0 else None
                    ax.errorbar(st.index, mean, yerr=err, color=PHASE_HEX[p],
                                ls=styles[gi % len(styles)], marker="o", ms=3, capsize=2, label=lab)
            ax.set_title(m.replace(".{p}", "").replace(".axis0", " (axis 0)"), fontsize=10)
            if m.startswith("tau_factor"):
                ax.set_yscale("log")  # tau spans decades near the percolation threshold
            ax.set_xlabel(key, fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
        for ax in axs[len(metrics):]:
            ax.axis("off")
        axs[0].legend(fontsize=8, frameon=False)
        style_names = ["solid", "dashed", "dotted", "dash-dot"]
        sub_txt = ("\nline styles: " + "; ".join(
            f"{style_names[i % 4]} " + ", ".join(f"{k} = {v:g}" for k, v in zip(others, g if isinstance(g, tuple) else (g,)))
            for i, (g, _) in enumerate(groups))) if others else ""
        fig.suptitle(f"Properties vs {key} (mean over realisations, whiskers: 95 % interval of the mean){sub_txt}",
                     fontsize=10)
        path = out / f"sweep_{key}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90)
        files[path.name] = path
    return files
