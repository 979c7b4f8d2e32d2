"""Each assignment's checks. A check calls the student's functions on cases it makes up (drawn
from the student's own number, so no two students see the same ones) and compares them with
the study's implementation, or recomputes a student's result from their own runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from gblend import blend
from gblend.coursework.assignments import StudentSetup, student_number
from gblend.coursework.grading import check
from gblend.experiments import stats

TOL = 1e-6


def _rng(student: StudentSetup, salt: int) -> np.random.Generator:
    return np.random.default_rng([student_number(student.assignment, student.student_id), salt])


def _close(a: Mapping[str, float], b: Mapping[str, float], tol: float = TOL) -> bool:
    return set(a) == set(b) and all(
        (math.isinf(a[k]) and math.isinf(b[k])) or abs(float(a[k]) - float(b[k])) <= tol for k in b
    )


def _compare(name: str, theirs: Any, ours: Mapping[str, float], case: Any) -> str | None:
    if not isinstance(theirs, Mapping):
        return f"{name} should return a dict head -> value, got {type(theirs).__name__}"
    if _close(theirs, ours):
        return None
    got = {k: round(float(v), 4) for k, v in theirs.items()}
    want = {k: round(float(v), 4) for k, v in ours.items()}
    return f"{name}{case}: got {got}, expected {want}"


# --- A1: the estimator ---------------------------------------------------------------------

HEADS = ("audio", "rgb", "joint")


def _point(train: Mapping[str, float], heldout: Mapping[str, float]) -> dict[str, dict]:
    return {"train": dict(train), "heldout": dict(heldout)}


def _a1_cases(student: StudentSetup, degenerate: bool) -> list[tuple[dict, dict]]:
    """Checkpoint pairs: every head generalises (ΔG > 0, |ΔO| well away from 0), or (with
    ``degenerate``) some heads' heldout loss rises."""
    rng = _rng(student, 1 + degenerate)
    cases = []
    for _ in range(6):
        train0 = dict(zip(HEADS, rng.uniform(1.5, 2.5, 3), strict=True))
        held0 = {h: v + rng.uniform(0.0, 0.2) for h, v in train0.items()}
        train1 = {h: v - rng.uniform(0.5, 1.2) for h, v in train0.items()}
        gain = rng.uniform(0.1, 0.5, 3)
        if degenerate:
            gain[rng.choice(3, size=int(rng.integers(1, 4)), replace=False)] *= -1
        held1 = {h: held0[h] - g for h, g in zip(HEADS, gain, strict=True)}
        cases.append((_point(train0, held0), _point(train1, held1)))
    return cases


def _measure(point: Mapping[str, Mapping[str, float]]) -> blend.Measurement:
    return blend.Measurement(point["train"], point["heldout"])


_NO_FLOOR = blend.DegeneratePolicy(min_weight=0)


def _each_case(ns, student, name: str, ours: Callable, degenerate: bool = False) -> str | None:
    fn = ns[name]
    for before, after in _a1_cases(student, degenerate):
        problem = _compare(name, fn(before, after), ours(before, after), "")
        if problem:
            return problem
    return None


@check("a1", 1, "overfitting: heldout minus train loss, per head")
def overfitting(ns, student):
    for before, _ in _a1_cases(student, False):
        problem = _compare(
            "overfitting", ns["overfitting"](before), blend.overfitting(_measure(before)), ""
        )
        if problem:
            return problem
    return None


@check("a1", 1, "delta_o: the change of overfitting over the window")
def delta_o(ns, student):
    return _each_case(
        ns, student, "delta_o", lambda b, a: blend.overfitting_change(_measure(b), _measure(a))
    )


@check("a1", 1, "delta_g: the fall of the heldout loss over the window")
def delta_g(ns, student):
    return _each_case(
        ns, student, "delta_g", lambda b, a: blend.generalization_gain(_measure(b), _measure(a))
    )


@check("a1", 1, "ogr: |ΔO / ΔG|")
def ogr(ns, student):
    return _each_case(ns, student, "ogr", lambda b, a: blend.ogr(_measure(b), _measure(a)))


def _weights(before, after) -> dict[str, float]:
    return blend.estimate_weights(_measure(before), _measure(after), _NO_FLOOR).weights


@check("a1", 2, "blend_weights: ΔG/ΔO², normalised, 0 for degenerate heads, uniform if all")
def blend_weights(ns, student):
    for degenerate in (False, True):
        if problem := _each_case(ns, student, "blend_weights", _weights, degenerate):
            return problem
    return None


@check("a1", 1, "degenerate_heads: the heads whose heldout loss did not fall")
def degenerate_heads(ns, student):
    for before, after in _a1_cases(student, True):
        est = blend.estimate_weights(_measure(before), _measure(after), _NO_FLOOR)
        ours = {f.head for f in est.fallbacks if f.rule in ("no_generalization", "non_finite")}
        theirs = ns["degenerate_heads"](before, after)
        if set(theirs) != ours:
            return f"degenerate_heads: got {sorted(theirs)}, expected {sorted(ours)}"
    return None


@check("a1", 2, "own_weights: your weights on your own run's first window equal gblend's")
def weights_on_own_run(ns, student):
    records = ns["res"].records
    if not records or records[0].method != "uniform" or records[0].seed not in student.seeds:
        return f"res should hold your multi-head (uniform) run at one of your seeds {student.seeds}"
    record = records[0]
    history = pd.DataFrame(record.history)
    start, end = 0, record.epochs_run // 2
    points = []
    for epoch in (start, end):
        at = history[history.epoch == epoch]
        points.append(_point(*(at[at.split == s].set_index("head")["loss"].to_dict()
                               for s in ("train_subset", "heldout"))))  # fmt: skip
    return _compare("own_weights", ns["own_weights"], _weights(*points), f" ({start}→{end})")


# --- A2: make fusion fail -----------------------------------------------------------------


def _fusion_gap(runs: pd.DataFrame, combo: str, method: str = "naive") -> dict[str, Any]:
    singles = runs[(runs.method == "naive") & runs.combo.isin(combo.split("+"))]
    best = singles.groupby("combo")["val_acc_last"].mean().idxmax()
    fused = runs[(runs.method == method) & (runs.combo == combo)].set_index("seed")
    alone = singles[singles.combo == best].set_index("seed")
    seeds = sorted(set(fused.index) & set(alone.index))
    diff = stats.paired_difference(
        100 * fused.loc[seeds, "test_acc_last"], 100 * alone.loc[seeds, "test_acc_last"]
    )
    return {"best_uni": best, "mean": diff.mean, "low": diff.low, "high": diff.high, "n": diff.n}


def _made_up_runs(student: StudentSetup, salt: int, methods=("naive",)) -> pd.DataFrame:
    """A runs frame of three modalities and their fusions, 4 seeds, random accuracies."""
    rng = _rng(student, salt)
    rows = []
    for seed in range(4):
        for combo in ("audio", "rgb", "flow", "audio+rgb"):
            for method in methods if "+" in combo else ("naive",):
                val, test = rng.uniform(0.2, 0.9, 2)
                rows.append({"combo": combo, "method": method, "seed": seed,
                             "val_acc_last": val, "test_acc_last": test})  # fmt: skip
    return pd.DataFrame(rows)


def _same_gap(theirs: Any, ours: Mapping[str, Any], where: str) -> str | None:
    if not isinstance(theirs, Mapping):
        return f"fusion_gap should return a dict, got {type(theirs).__name__}"
    if theirs.get("best_uni") != ours["best_uni"]:
        return f"{where}: best single modality {theirs.get('best_uni')!r}, expected "\
            f"{ours['best_uni']!r} (chosen on mean val accuracy)"  # fmt: skip
    numbers = {k: ours[k] for k in ("mean", "low", "high", "n")}
    if not _close({k: theirs.get(k, math.nan) for k in numbers}, numbers, 1e-4):
        got = {k: theirs.get(k) for k in numbers}
        return f"{where}: got {got}, expected {numbers}"
    return None


@check("a2", 2, "fusion_gap: best uni chosen on val, paired test difference in points")
def fusion_gap(ns, student):
    for salt, method in ((10, "naive"), (11, "offline")):
        runs = _made_up_runs(student, salt, ("naive", "offline"))
        theirs = ns["fusion_gap"](runs, "audio+rgb", method)
        if problem := _same_gap(theirs, _fusion_gap(runs, "audio+rgb", method), "made-up runs"):
            return problem
    return None


@check("a2", 1, "knobs: known knobs of the synthetic set, changed from your starting testbed")
def testbed(ns, student):
    from gblend import data as gdata

    knobs = ns["knobs"]
    unknown = sorted(set(knobs) - set(gdata.knob_names("synthetic")))
    if unknown:
        return f"unknown knobs {unknown}"
    if {**student.knobs, **knobs} == student.knobs:
        return "knobs is your starting testbed unchanged"
    return None


def _knobs_of(record) -> dict[str, Any]:
    return dict(record.config.get("data", {}))


def _runs_at(res, student: StudentSetup, knobs: Mapping[str, Any], methods) -> str | None:
    records = res.records
    found = {(r.combo, r.method) for r in records}
    wanted = {(c, "naive") for c in ("audio", "rgb")} | {("audio+rgb", m) for m in methods}
    if not wanted <= found:
        return f"missing runs {sorted(wanted - found)}"
    if {r.seed for r in records} != set(student.seeds):
        return f"runs at seeds {sorted({r.seed for r in records})}, not yours {student.seeds}"
    wrong = [r.combo for r in records if any(_knobs_of(r).get(k) != v for k, v in knobs.items())]
    if wrong:
        return f"runs of {sorted(set(wrong))} were not made with your knobs"
    return None


@check("a2", 1, "res: audio, RGB and their fusion on your knobs, at your seeds")
def runs_on_your_testbed(ns, student):
    return _runs_at(ns["res"], student, ns["knobs"], ("naive",)) or _same_gap(
        ns["gap"], _fusion_gap(ns["res"].runs, "audio+rgb"), "your runs"
    )


@check("a2", 1, "overfitting_curve: the fused head's heldout minus train-subset loss")
def overfitting_curve(ns, student):
    history = ns["res"].history
    joint = history[history["head"] == "joint"]
    wide = joint.pivot_table(index=["combo", "seed", "epoch"], columns="split", values="loss")
    ours = (wide["heldout"] - wide["train_subset"]).rename("overfitting").reset_index()
    ours = ours.sort_values(["combo", "seed", "epoch"], ignore_index=True)
    theirs = ns["overfitting_curve"](history)
    columns = ["combo", "seed", "epoch", "overfitting"]
    if not isinstance(theirs, pd.DataFrame) or list(theirs.columns[:4]) != columns:
        return f"overfitting_curve should return a DataFrame with columns {columns}"
    theirs = theirs[columns].reset_index(drop=True)
    try:
        pd.testing.assert_frame_equal(theirs, ours, check_dtype=False, atol=1e-6)
    except AssertionError as error:
        return f"overfitting_curve differs from the history: {str(error).splitlines()[0]}"
    return None


@check("a2", 1, "res_blend: offline G-Blend and equal weights on your knobs and seeds")
def blend_runs(ns, student):
    return _runs_at(ns["res_blend"], student, ns["knobs"], ("uniform", "offline"))


# --- A3: super-epoch length ---------------------------------------------------------------


@check("a3", 1, "n_estimates: one estimate per super-epoch, the warm-up included")
def n_estimates(ns, student):
    rng = _rng(student, 20)
    cases = [
        (45, 10, 5),
        (3, 5, 1),
        *(tuple(int(v) for v in rng.integers(1, 40, 3)) for _ in range(20)),
    ]
    for epochs, warmup, length in cases:
        want = len(blend.super_epochs(epochs, warmup, length))
        got = ns["n_estimates"](epochs, warmup, length)
        if got != want:
            return f"n_estimates({epochs}, {warmup}, {length}) = {got}, expected {want}"
    return None


@check("a3", 2, "make_grid: naive once per seed, online over every warm-up × length")
def make_grid(ns, student):
    from gblend.experiments.grid import Grid

    rng = _rng(student, 21)
    warmups, lengths = sorted(rng.choice(np.arange(1, 6), 2, replace=False).tolist()), [1, 2]
    grid = ns["make_grid"]("smoke", student.seeds, warmups, lengths)
    if not isinstance(grid, Grid):
        return f"make_grid should return an ex.Grid, got {type(grid).__name__}"
    units = list(grid)
    if {u.dataset for u in units} != {"synthetic"} or {u.combo for u in units} != {"audio+rgb"}:
        return "the grid should hold synthetic audio+rgb runs only"
    naive = sorted(u.seed for u in units if u.method == "naive")
    if naive != sorted(student.seeds):
        return f"naive should run once per seed {list(student.seeds)}, ran at {naive}"
    online = sorted(
        (u.seed, u.params.warmup, u.params.length) for u in units if u.method == "online"
    )
    want = sorted((s, w, n) for s in student.seeds for w in warmups for n in lengths)
    if online != want or len(units) != len(naive) + len(want):
        return f"make_grid(..., {warmups}, {lengths}): online runs {online}, expected {want}"
    return None


def _cost_accuracy(runs: pd.DataFrame) -> pd.DataFrame:
    naive = runs[runs.method == "naive"].set_index("seed")["test_acc_last"]
    rows = []
    for (warmup, length), cell in runs[runs.method == "online"].groupby(["warmup", "length"]):
        cell = cell.set_index("seed")
        diff = stats.paired_difference(100 * cell["test_acc_last"], 100 * naive.loc[cell.index])
        epochs = int(cell["epochs_run"].iloc[0])
        rows.append({
            "warmup": warmup, "length": length,
            "estimates": len(blend.super_epochs(epochs, int(warmup), int(length))),
            "extra_epochs": cell["estimation_epochs"].mean(),
            "extra_seconds": cell["estimation_seconds"].mean(),
            "acc": 100 * cell["test_acc_last"].mean(),
            "gain": diff.mean, "gain_low": diff.low, "gain_high": diff.high,
        })  # fmt: skip
    return pd.DataFrame(rows).sort_values(["warmup", "length"], ignore_index=True)


def _made_up_online(student: StudentSetup) -> pd.DataFrame:
    rng = _rng(student, 22)
    rows = []
    for seed in range(3):
        rows.append({"method": "naive", "seed": seed, "warmup": None, "length": None,
                     "epochs_run": 20, "estimation_epochs": 0.0, "estimation_seconds": 0.0,
                     "test_acc_last": rng.uniform(0.3, 0.8)})  # fmt: skip
        for warmup in (2, 5):
            for length in (1, 4):
                rows.append({"method": "online", "seed": seed, "warmup": warmup,
                             "length": length, "epochs_run": 20,
                             "estimation_epochs": rng.uniform(10, 60),
                             "estimation_seconds": rng.uniform(1, 9),
                             "test_acc_last": rng.uniform(0.3, 0.8)})  # fmt: skip
    return pd.DataFrame(rows)


@check("a3", 2, "cost_accuracy: estimates, extra epochs and seconds, accuracy, paired gain")
def cost_table(ns, student):
    columns = ["warmup", "length", "estimates", "extra_epochs", "extra_seconds", "acc", "gain",
               "gain_low", "gain_high"]  # fmt: skip
    for where, runs in (("made-up runs", _made_up_online(student)), ("your runs", ns["runs"])):
        theirs = ns["cost_accuracy"](runs)
        if not isinstance(theirs, pd.DataFrame) or not set(columns) <= set(theirs.columns):
            return f"cost_accuracy should return a DataFrame with columns {columns}"
        try:
            pd.testing.assert_frame_equal(
                theirs[columns].reset_index(drop=True).astype(float),
                _cost_accuracy(runs)[columns].astype(float),
                atol=1e-4,
            )
        except AssertionError as error:
            return f"cost_accuracy on {where}: {' '.join(str(error).split())[:200]}"
    return None


# --- A4: a new remedy ---------------------------------------------------------------------

NEW_METHOD = "modality_dropout"


@check("a4", 2, "ModalityDropout: drops whole modalities at rate p in training, never all")
def modality_dropout_module(ns, student):
    import torch

    modalities = ("a", "b", "c")
    p = float(_rng(student, 30).uniform(0.3, 0.6))
    torch.manual_seed(0)
    features = {m: torch.randn(4000, 8) for m in modalities}
    gate = ns["ModalityDropout"](modalities, p)
    out = gate.eval()(features)
    if any(not torch.equal(out[m], features[m]) for m in modalities):
        return "in eval mode the features must come back unchanged"
    if any(not torch.equal(gate.__class__(modalities, 0.0).train()(features)[m], features[m])
           for m in modalities):  # fmt: skip
        return "with p = 0 the features must come back unchanged"
    out = gate.train()(features)
    dropped = torch.stack([(out[m] == 0).all(dim=1) for m in modalities], dim=1)
    kept = all(
        torch.equal(out[m][~dropped[:, i]], features[m][~dropped[:, i]])
        for i, m in enumerate(modalities)
    )
    if not kept:
        return "features that are not dropped must come back unchanged"
    if bool(dropped.all(dim=1).any()):
        return "some samples lost every modality"
    # dropping each with p, then restoring one where all were dropped: p - p^k / k
    expected = p - p ** len(modalities) / len(modalities)
    share = float(dropped.float().mean())
    if abs(share - expected) > 0.03:
        return f"with p = {p:.2f} it dropped {share:.3f} of the features, expected {expected:.3f}"
    return None


@check("a4", 1, "the method is registered, with a parameter p")
def registered(ns, student):
    from gblend.experiments import methods as gmethods

    if NEW_METHOD not in gmethods.METHODS:
        return f"no method {NEW_METHOD!r} in the registry"
    params = gmethods.get(NEW_METHOD).make_params({"p": 0.25})
    return None if params.p == 0.25 else "its parameter p is not kept"


def _smoke_run(student: StudentSetup, method: str, **params: float):
    from gblend.experiments import runner
    from gblend.experiments.grid import Grid

    fixed = {f"{method}.{k}": v for k, v in params.items()}
    grid = Grid.resolve(
        scale="smoke",
        datasets="mfeat",
        methods=(method,),
        seeds=student.seeds[:1],
        combos="study",
        device="cpu",
        fixed=fixed,
    )
    return runner.run_unit(grid.units()[0])


@check("a4", 2, "p = 0 trains exactly the naive model; p > 0 trains another")
def p_zero_is_naive(ns, student):
    naive = pd.DataFrame(_smoke_run(student, "naive").history)
    same = pd.DataFrame(_smoke_run(student, NEW_METHOD, p=0.0).history)
    other = pd.DataFrame(_smoke_run(student, NEW_METHOD, p=0.5).history)
    if len(same) != len(naive) or not np.allclose(same["loss"], naive["loss"], atol=1e-6):
        return "at p = 0 the run's losses differ from the naive run's"
    if np.allclose(other["loss"], naive["loss"], atol=1e-6):
        return "at p = 0.5 the run is the naive run: the dropout is never applied"
    return None


@check("a4", 1, "res: naive, equal weights, G-Blend and yours on mfeat at your seeds")
def evaluated(ns, student):
    runs = ns["res"].runs
    wanted = {"naive", "uniform", "offline", NEW_METHOD}
    if not wanted <= set(runs.method):
        return f"missing methods {sorted(wanted - set(runs.method))}"
    if set(runs.dataset) != {"mfeat"} or set(runs.seed) != set(student.seeds):
        return f"the runs should be mfeat's, at your seeds {list(student.seeds)}"
    return None


def _against_naive(runs: pd.DataFrame) -> pd.DataFrame:
    naive = runs[runs.method == "naive"].set_index("seed")["test_acc_last"]
    rows = {}
    for method, cell in runs[runs.method != "naive"].groupby("method"):
        cell = cell.set_index("seed")["test_acc_last"]
        diff = stats.paired_difference(100 * cell, 100 * naive.loc[cell.index])
        rows[method] = {
            "mean": diff.mean,
            "low": diff.low,
            "high": diff.high,
            "collapses": int((100 * (cell - naive.loc[cell.index]) < -10).sum()),
        }
    return pd.DataFrame(rows).T.sort_index()


@check("a4", 1, "compare: each method minus naive, paired, with its collapses")
def comparison(ns, student):
    rng = _rng(student, 31)
    made_up = pd.DataFrame([
        {"method": m, "seed": s, "test_acc_last": rng.uniform(0.3, 0.95)}
        for m in ("naive", "offline", "uniform", NEW_METHOD) for s in range(4)
    ])  # fmt: skip
    columns = ["mean", "low", "high", "collapses"]
    for where, runs in (("made-up runs", made_up), ("your runs", ns["res"].runs)):
        theirs = ns["compare"](runs)
        if not isinstance(theirs, pd.DataFrame) or not set(columns) <= set(theirs.columns):
            return f"compare should return a DataFrame with columns {columns}"
        try:
            pd.testing.assert_frame_equal(
                theirs[columns].astype(float),
                _against_naive(runs)[columns].astype(float),
                atol=1e-4,
            )
        except AssertionError as error:
            return f"compare on {where}: {' '.join(str(error).split())[:200]}"
    return None
