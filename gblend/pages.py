"""What every book page needs besides its own analysis: its grid from the parameters cell,
the one glued line saying scale, seeds, devices and commit, the verdict glue and the
provenance table. Notebooks call :func:`open_page` right after their parameters cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from gblend import experiments as ex
from gblend.experiments.registry import scale_datasets

# The verdict of a claim on a data set that its experiments run at full scale only, before
# the full-scale results are committed (the scorecard's legend says what it means)
FULL_SCALE_ONLY = "full scale only"
SMOKE_WARNING = (
    "**This page was built at `smoke` scale** (a few epochs, one seed, subsampled data) to "
    "test the pipeline: its numbers are not evidence."
)


def _glue(name: str, value, display: bool = False) -> None:
    from myst_nb import glue  # the [book] extra; only pages need it

    glue(name, value, display=display)


def _show_markdown(text: str) -> None:
    from IPython.display import Markdown, display

    display(Markdown(text))


def show_findings(lines: Sequence[str] | Mapping[str, str], glue_as: str = "") -> None:
    """Computed sentences shown on the page as a bullet list (and glued for other pages, when
    ``glue_as`` is given, as ``<glue_as>_<key>`` for a mapping of named sentences, else
    ``<glue_as>_<i>``: as plain text, without the bold markers, since a glued text is
    inserted as it is)."""
    named = dict(lines) if isinstance(lines, Mapping) else dict(enumerate(lines))
    _show_markdown("\n".join(f"- {line}" for line in named.values()))
    for key, line in named.items() if glue_as else ():
        _glue(f"{glue_as}_{key}", line.replace("**", ""))


def swept_axes_text(grid: ex.Grid, experiment: str) -> str:
    """The settings a page's grid sweeps, and those its experiment sweeps at ``full`` only
    that this grid does not (said as not swept here, never as a result)."""
    swept = "; ".join(f"`{name}` ∈ {{{', '.join(map(str, v))}}}" for name, v in grid.axes)
    text = swept or "nothing"
    names = {name for name, _ in grid.axes}
    wider = [
        f"`{name}` ∈ {{{', '.join(map(str, v))}}}"
        for name, v in ex.EXPERIMENTS[experiment].full_axes
        if name not in names or dict(grid.axes)[name] != tuple(v)
    ]
    if grid.scale.name != "full" and wider:
        text += f". At `full` scale the grid sweeps {'; '.join(wider)}; this page's grid does not"
    return text


def glue_swept_axes(page: Page) -> None:
    grids = [g for name, g in page.parts if name == page.experiment]
    if len(grids) == 1:
        _glue("swept_axes", swept_axes_text(grids[0], page.experiment))
        return
    _glue(
        "swept_axes",
        "; ".join(
            f"at `{g.scale.name}` scale ({', '.join(g.datasets)}): "
            + swept_axes_text(g, page.experiment)
            for g in grids
        ),
    )


def _seed_text(seeds: Sequence[int]) -> str:
    seeds = sorted(seeds)
    if not seeds:
        return "no seeds"
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{len(seeds)} seeds ({seeds[0]}–{seeds[-1]})"
    return f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})"


def _machines(runs: pd.DataFrame) -> str:
    """Devices as the runs name them: a GPU's name, else the CPU model and thread count."""
    if runs.empty:
        return "no runs"
    names = []
    for (device, name, threads), _ in runs.groupby(
        [runs.device, runs.device_name, runs.threads.fillna(0)], sort=True
    ):
        if device.startswith("cuda"):
            names.append(name)
        else:
            names.append(
                f"{name} ({int(threads)} thread{'s' if threads != 1 else ''})" if threads else name
            )
    return "; ".join(dict.fromkeys(names))


def _commits(runs: pd.DataFrame) -> str:
    commits = sorted({c[:7] + ("-dirty" if c.endswith("-dirty") else "") for c in runs.git_commit})
    return ", ".join(commits) if commits else "unknown"


@dataclass
class Page:
    """A page's grid and results, and the page furniture built from them.

    ``grid`` is the page's first experiment's grid; ``parts`` holds every (experiment, grid)
    behind the page (by default that one): at ``published`` scale one grid per experiment and
    scale, each data set at one scale.
    """

    experiment: str
    grid: ex.Grid
    results: ex.Results
    results_dir: str | None = None
    parts: tuple[tuple[str, ex.Grid], ...] = ()

    def __post_init__(self) -> None:
        self.parts = self.parts or ((self.experiment, self.grid),)

    @property
    def runs(self) -> pd.DataFrame:
        return self.results.runs

    @property
    def grids(self) -> tuple[ex.Grid, ...]:
        return tuple(g for _, g in self.parts)

    @property
    def scales(self) -> dict[str, str]:
        """Each data set the page shows -> the scale it is shown at."""
        return {d: g.scale.name for _, g in self.parts for d in g.datasets}

    def scale_text(self) -> str:
        """``cpu``, or where the data sets differ, e.g. ``full (mfeat) and cpu (synthetic)``."""
        by_scale: dict[str, list[str]] = {}
        for dataset, scale in self.scales.items():
            by_scale.setdefault(scale, []).append(dataset)
        if len(by_scale) == 1:
            return next(iter(by_scale))
        return " and ".join(f"{s} ({', '.join(ds)})" for s, ds in by_scale.items())

    def banner(self) -> str:
        """One line: scale, runs, seeds, the machines that produced them, commits."""
        runs = self.runs
        return (
            f"{self.scale_text()} scale: {len(runs)} runs, "
            f"{_seed_text(runs.seed.unique().tolist())}, on {_machines(runs)}; "
            f"commit {_commits(runs)}"
        )

    def glue_verdicts(self, verdicts: pd.DataFrame) -> None:
        """Glue each verdict as ``verdict_<dataset>_claim<n>`` (the scorecard reads them);
        a verdict of a non-default setting gets the variant in its name. Each of those claims
        of a data set that the page's experiments run at full scale only, and whose results
        are not in yet, is glued as :data:`FULL_SCALE_ONLY`."""
        names = dict.fromkeys(name for name, _ in self.parts)
        on_cpu = {d for name in names for d in scale_datasets(name, "cpu")}
        pending = dict.fromkeys(
            d
            for name in names
            for d in scale_datasets(name, "full")
            if d not in self.scales and d not in on_cpu
        )
        claims = {}
        for row in verdicts.itertuples():
            suffix = f"_{row.variant}" if getattr(row, "variant", "") else ""
            claims[f"claim{row.claim}{suffix}"] = None
            _glue(f"verdict_{row.dataset}_claim{row.claim}{suffix}", row.verdict)
        for claim in claims:
            for dataset in pending:
                _glue(f"verdict_{dataset}_{claim}", FULL_SCALE_ONLY)

    def search(self, experiment: str = "") -> pd.DataFrame:
        """The search behind an experiment's chosen settings (the page's first by default):
        each candidate's mean val accuracy on the calibration seeds, and which was chosen."""
        name = experiment or self.experiment
        tables = [
            ex.EXPERIMENTS[name].search(
                g.scale.name,
                self.results_dir,
                datasets=",".join(g.datasets),
                epochs=g.scale.epochs,
                device=g.device,
            )
            for part, g in self.parts
            if part == name
        ]
        return pd.concat(tables, ignore_index=True)

    def provenance(self, by: Sequence[str] = ("dataset", "method")) -> pd.DataFrame:
        """Per group: scale (where grouped by data set), runs, seeds, data fingerprints,
        machines, commits and wall time."""
        runs = self.runs
        rows = []
        for key, group in runs.groupby(list(by), sort=False):
            key = key if isinstance(key, tuple) else (key,)
            named = dict(zip(by, key, strict=True))
            rows.append(
                named
                | ({"scale": self.scales.get(named["dataset"])} if "dataset" in named else {})
                | {
                    "runs": len(group),
                    "seeds": group.seed.nunique(),
                    "data fingerprints": ", ".join(
                        sorted({f[:12] for f in group.data_fingerprint})
                    ),
                    "machines": _machines(group),
                    "commits": _commits(group),
                    "wall seconds": group.wall_seconds.sum(),
                }
            )
        return pd.DataFrame(rows)


def open_page(
    experiment: str | Sequence[str],
    scale: str = "cpu",
    datasets: str = "all",
    seeds: int | str = 0,
    epochs: int = 0,
    device: str = "auto",
    results_dir: str = "",
    run_missing: bool = True,
) -> Page:
    """The parameters cell's grid, run (or loaded); glues ``scale``, ``n_seeds``, ``n_runs``
    and ``banner``, and warns on the page when it was built at ``smoke`` scale.

    Several experiments (a page that shows their data sets side by side) give one page of
    all their runs; the page's grid is the first's, and a unit two grids share counts once.
    """
    names = [experiment] if isinstance(experiment, str) else list(experiment)
    requests = _requests(names, scale, datasets, results_dir or None)
    for name, at, chosen in requests:  # an experiment that selects on val: its search first
        if ex.EXPERIMENTS[name].select:
            search = ex.EXPERIMENTS[name].search_grid(
                at, datasets=chosen, epochs=epochs, device=device
            )
            ex.run(search, results_dir or None, progress=False, run_missing=run_missing)
    parts = tuple(
        (
            name,
            ex.EXPERIMENTS[name].grid(
                scale=at,
                datasets=chosen,
                seeds=seeds,
                epochs=epochs,
                device=device,
                results_dir=results_dir or None,
            ),
        )
        for name, at, chosen in requests
    )
    records = {}
    for _, grid in parts:
        run = ex.run(grid, results_dir or None, progress=False, run_missing=run_missing)
        records |= {rec.key: rec for rec in run.records}
    page = Page(names[0], parts[0][1], ex.Results(records.values()), results_dir or None, parts)
    _glue("scale", page.scale_text())
    _glue("n_seeds", int(page.runs.seed.nunique()) if len(page.runs) else 0)
    _glue("n_runs", len(page.runs))
    _glue("banner", page.banner())
    if scale == "smoke":
        _show_markdown(SMOKE_WARNING)
    return page


def _requests(
    names: Sequence[str], scale: str, datasets: str, results_dir: str | None
) -> list[tuple[str, str, str]]:
    """(experiment, scale, data sets) of each grid a page opens: at ``published`` the scale
    :func:`gblend.experiments.published_plan` gives each data set (a ``datasets`` list keeps
    its own), else every experiment at ``scale``."""
    if scale != "published":
        return [(name, scale, datasets) for name in names]
    plan = ex.published_plan(names, results_dir)
    if datasets not in ("", "all"):
        wanted = set(datasets.split(","))
        plan = {d: s for d, s in plan.items() if d in wanted}
    requests = []
    for name in names:
        for at in ("full", "cpu"):
            chosen = [d for d in scale_datasets(name, at) if plan.get(d) == at]
            if chosen:
                requests.append((name, at, ",".join(chosen)))
    if not requests:
        raise ex.GridError(f"no data set of {', '.join(names)} to show at published scale")
    return requests
