"""The engine: grids, the method and dataset registries, typed records, committed results."""

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gblend import data as gdata
from gblend import experiments as ex
from gblend.experiments import methods as gmethods
from gblend.experiments.grid import Unit
from gblend.results import RECORD_SUFFIX, canonical_json, read_record, unit_key

RESULTS = Path(__file__).resolve().parent.parent / "results"


def committed():
    stores = {method.store for method in gmethods.METHODS.values()}
    for path in sorted(RESULTS.glob(f"*/*/*/*{RECORD_SUFFIX}")):
        if path.parts[-4] in stores:
            yield path, read_record(path)


def test_every_committed_result_is_named_by_the_key_of_its_config():
    files = list(committed())
    assert len(files) > 300
    for path, record in files:
        unit = Unit.from_config(record["config"], scale=path.parts[-3])
        assert canonical_json(unit.config()) == canonical_json(record["config"]), path
        stem = path.name.removesuffix(RECORD_SUFFIX)
        assert unit_key(unit.config(), record["data_fingerprint"]) == stem == record["key"]


@pytest.mark.parametrize("name", list(ex.EXPERIMENTS))
def test_each_committed_grid_is_found_whole_or_not_at_all(name):
    """A data set's setting of a method in a grid whose result files are found only in part
    means the key scheme drifted (a sweep's default setting may be found alone: it is another
    chapter's grid; so may one method's runs; a data set may be committed at full before the
    others)."""
    stored = {(p.parts[-3], canonical_json(r["config"])) for p, r in committed()}
    entry = ex.EXPERIMENTS[name]
    for scale in (s for s in ("cpu", "full") if s in entry.scales):
        by_variant: dict[tuple, list[bool]] = {}
        units = list(entry.search_grid(scale)) if entry.select else []
        try:
            units += list(entry.grid(scale))
        except ex.GridError:  # a search not yet run (at full): its own units are checked
            assert scale == "full", f"the committed cpu-scale search of {name} is not found"
        for u in units:
            found = (scale, canonical_json(u.config())) in stored
            by_variant.setdefault((u.dataset, u.variant, u.method), []).append(found)
        for variant, found in by_variant.items():
            assert all(found) or not any(found), (name, scale, variant, sum(found), len(found))
            if scale == "cpu":
                assert all(found), f"the committed cpu-scale {name} grid is not found"


def test_a_method_semantics_version_changes_every_key(monkeypatch):
    unit = next(u for u in ex.EXPERIMENTS["table2"].grid("smoke", "mfeat") if u.method == "offline")
    before = unit_key(unit.config(), "fp")
    bumped = replace(gmethods.METHODS["offline"], version=2)
    monkeypatch.setitem(gmethods.METHODS, "offline", bumped)
    assert unit_key(unit.config(), "fp") != before


def test_grid_resolves_the_notebook_conventions():
    grid = ex.EXPERIMENTS["table2"].grid("cpu", "mfeat")
    assert grid.seeds == (0, 1, 2) and grid.scale.epochs == 30
    units = list(grid)
    # singles naive; the study set with every method; G-Blend parameters resolved from N
    assert {(u.combo, u.method) for u in units if u.seed == 0} == {
        ("pix", "naive"), ("fou", "naive"), ("mor", "naive"),
        *(("pix+fou+mor", m) for m in ("naive", "offline", "online", "uniform")),
    }  # fmt: skip
    offline = next(u for u in units if u.method == "offline")
    assert offline.params.estimate_epochs == 30 and offline.model.modality_heads
    online = next(u for u in units if u.method == "online")
    assert (online.params.warmup, online.params.length) == (7, 3)
    explicit = ex.EXPERIMENTS["table1"].grid("smoke", "mfeat", seeds="1000-1002", epochs=3)
    assert explicit.seeds == (1000, 1001, 1002) and explicit.scale.epochs == 3


def test_axes_multiply_the_grid_and_name_each_variant():
    base = ex.EXPERIMENTS["table1"].grid("smoke", "mfeat")
    swept = ex.EXPERIMENTS["table1"].grid(
        "smoke", "mfeat", axes={"train.lr": [0.1, 0.01], "model.dropout": [0.0, 0.5]}
    )
    assert len(swept) == 4 * len(base)
    labels = {u.variant_label for u in swept}
    assert "train.lr=0.1, model.dropout=0.5" in labels and len(labels) == 4
    first = next(iter(swept))
    assert first.train.lr == 0.1 and first.model.dropout == 0.0
    keys = {unit_key(u.config(), "fp") for u in swept}
    assert len(keys) == len(swept)  # every variant is its own unit


def test_one_at_a_time_varies_each_axis_alone_from_the_first_values():
    grid = ex.Grid.resolve(
        "smoke",
        "mfeat",
        methods=("naive", "offline"),
        combos="study",
        sweep="one_at_a_time",
        axes={"offline.window": [1.0, 0.5, 0.25], "offline.formula": ["paper", "softmax"]},
    )
    offline = [dict(u.variant) for u in grid if u.method == "offline"]
    assert offline == [
        {"offline.window": 1.0, "offline.formula": "paper"},
        {"offline.window": 0.5, "offline.formula": "paper"},
        {"offline.window": 0.25, "offline.formula": "paper"},
        {"offline.window": 1.0, "offline.formula": "softmax"},
    ]
    # a method's axis does not repeat another method's unit
    naive = [u for u in grid if u.method == "naive"]
    assert len(naive) == 1 and naive[0].variant == ()
    product = ex.Grid.resolve(
        "smoke",
        "mfeat",
        methods=("naive", "offline"),
        combos="study",
        axes={"offline.window": [1.0, 0.5, 0.25], "offline.formula": ["paper", "softmax"]},
    )
    assert sum(u.method == "offline" for u in product) == 6
    assert sum(u.method == "naive" for u in product) == 1
    with pytest.raises(ex.GridError, match="unknown sweep"):
        ex.Grid.resolve("smoke", "mfeat", sweep="random")


def test_new_offline_parameters_at_their_defaults_keep_every_earlier_key():
    (unit,) = (u for u in ex.EXPERIMENTS["table2"].grid("cpu", "mfeat") if u.method == "offline"
               and u.seed == 0)  # fmt: skip
    assert set(unit.config()["method_params"]) == {"estimate_epochs", "metric", "min_weight"}
    softmax = replace(unit, params=replace(unit.params, formula="softmax"))
    assert softmax.config()["method_params"]["formula"] == "softmax"
    assert unit_key(softmax.config(), "fp") != unit_key(unit.config(), "fp")


def test_an_experiment_may_default_to_other_data_sets_at_full():
    regime = ex.EXPERIMENTS["regime"]
    assert regime.grid("cpu").datasets == ("mfeat",)
    assert regime.grid("full").datasets == ("avdigits", "hapt", "mfeat")
    assert regime.grid("full", datasets="mfeat").datasets == ("mfeat",)


def test_a_swept_schedule_length_moves_the_learning_rate_step_with_it():
    grid = ex.EXPERIMENTS["table1"].grid("cpu", "mfeat", axes={"train.epochs": [15, 30, 60]})
    schedules = {(u.train.epochs, u.train.lr_milestones) for u in grid}
    assert schedules == {(15, (9,)), (30, (18,)), (60, (36,))}
    default = {unit_key(u.config(), "fp") for u in ex.EXPERIMENTS["table1"].grid("cpu", "mfeat")}
    assert {unit_key(u.config(), "fp") for u in grid if u.train.epochs == 30} == default


def test_named_combinations_and_the_whole_train_split_share_the_default_units():
    named = ex.EXPERIMENTS["table1"].grid("smoke", "mfeat", combos="pix,pix+fou")
    assert [u.combo for u in named] == ["pix", "pix+fou"]
    default = {unit_key(u.config(), "fp") for u in ex.EXPERIMENTS["table1"].grid("smoke", "mfeat")}
    swept = ex.EXPERIMENTS["table1"].grid(
        "smoke", "mfeat", axes={"data.train_frac": [1.0, 0.5]}, combos="pix,pix+fou"
    )
    whole, half = ([u for u in swept if u.variant == (("data.train_frac", f),)] for f in (1, 0.5))
    assert {unit_key(u.config(), "fp") for u in whole} <= default  # the same runs, reused
    assert all(u.data_knobs["train_frac"] == 0.5 for u in half)
    # the same SGD steps: twice the passes over half the data
    assert {(u.train.passes_per_epoch, u.train.epochs) for u in half} == {
        (2, whole[0].train.epochs)
    }
    assert all(u.train.passes_per_epoch == 1 for u in whole)
    assert not {unit_key(u.config(), "fp") for u in half} & default


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seeds": -2}, "positive count"),
        ({"seeds": "3,3"}, "distinct"),
        ({"seeds": "a-b"}, "look like"),
        ({"epochs": -1}, "epochs"),
        ({"datasets": "kinetics"}, "unknown datasets"),
        ({"axes": {"train.lr": [0.1, -1.0]}}, "train.lr must be positive"),
        ({"axes": {"train.optimizer": ["rmsprop"]}}, "unknown optimizer"),
        ({"axes": {"model.widht": [1]}}, "unknown setting 'model.widht'"),
        ({"axes": {"colour": [1]}}, "unknown setting 'colour'"),
        ({"axes": {"offline.windw": [3]}}, "unknown setting 'offline.windw'"),
        ({"axes": {"offline.window": [0.5, 3]}}, "window must be in"),
        ({"axes": {"offline.formula": ["log_ratio"]}}, "unknown formula"),
        ({"fixed": {"data.noise": 1}}, "unknown setting 'data.noise'"),
        ({"axes": {"train.lr": []}}, "no values"),
        ({"combos": "pix+kar"}, "combination rule 'pix\\+kar'"),
        ({"combos": "everything"}, "combination rule 'everything'"),
        ({"axes": {"data.train_frac": [0.5, 0.0]}}, "train_frac must be in"),
    ],
)
def test_impossible_grids_raise_a_named_error_before_any_compute(changes, message):
    with pytest.raises(ex.GridError, match=message):
        ex.EXPERIMENTS["table2"].grid("smoke", **changes)


def test_duplicate_identities_are_refused_not_pooled(tmp_path):
    grid = ex.EXPERIMENTS["table1"].grid("smoke", "mfeat", epochs=1)
    unit = next(iter(grid))
    other = replace(unit, train=replace(unit.train, lr=0.5))  # another setting, same identity
    records = ex.run_grid([unit, other], str(tmp_path), progress=False, jobs=1)
    with pytest.raises(ValueError, match="two results for"):
        ex.Results(records)


@pytest.fixture
def toy_dataset():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 60)
    left = rng.normal(size=(180, 5)) + 1.5 * np.eye(3)[y] @ rng.normal(size=(3, 5))
    right = rng.normal(size=(180, 12, 2))
    gdata.register_arrays("toy", {"left": left, "right": right}, y, classes=["a", "b", "c"])
    yield "toy"
    gdata.unregister("toy")


def test_a_users_dataset_runs_table1_and_gblend(toy_dataset, tmp_path):
    ds = gdata.load(toy_dataset, seed=1)
    assert ds.specs["right"].kind == "sequence" and set(ds.splits) == {
        "train", "heldout", "val", "test"
    }  # fmt: skip
    assert ds.fingerprint != gdata.load(toy_dataset, seed=2).fingerprint
    # two worker processes: the data set registered here must reach them
    table4 = ex.run(ex.EXPERIMENTS["table4"].grid("smoke", toy_dataset), str(tmp_path), jobs=2)
    offline = table4.weights[table4.weights.method == "offline"]
    assert set(offline["head"]) == {"left", "right", "joint"}
    assert offline.weight.sum() == pytest.approx(1.0)
    assert {r.provenance["threads"] for r in table4.records} == {1}  # trained in the workers
    table1 = ex.run(ex.EXPERIMENTS["table1"].grid("smoke", toy_dataset), str(tmp_path), jobs=1)
    assert set(table1.runs.combo) == {"left", "right", "left+right"}
    # Table 1's runs are Table 4's naive runs: found, not trained again
    assert len(list(tmp_path.rglob(f"*{RECORD_SUFFIX}"))) == 3 + 1


def test_registering_checks_the_arrays():
    y = np.repeat(np.arange(2), 10)
    with pytest.raises(ValueError, match="samples"):
        gdata.register_arrays("bad", {"a": np.zeros((19, 3))}, y)
    with pytest.raises(ValueError, match="already registered"):
        gdata.register_arrays("mfeat", {"a": np.zeros((20, 3))}, y)
    with pytest.raises(ValueError, match="fused head"):
        gdata.register_arrays("bad", {"joint": np.zeros((20, 3))}, y)
    assert "bad" not in gdata.names()


class _FailsInAnotherProcess:
    """A data set build that cannot be rebuilt in a worker process."""

    def __init__(self, build):
        self.build, self.pid = build, os.getpid()

    def __call__(self, *args):
        return self.build(*args)

    def __setstate__(self, state):
        if os.getpid() != state["pid"]:
            raise RuntimeError("this data set cannot be rebuilt here")
        self.__dict__.update(state)


def test_a_worker_that_cannot_start_fails_the_grid_instead_of_hanging(toy_dataset, tmp_path):
    entry = gdata.get(toy_dataset)
    gdata.register(replace(entry, build=_FailsInAnotherProcess(entry.build)), replace=True)
    grid = ex.EXPERIMENTS["table1"].grid("smoke", toy_dataset)
    with pytest.raises(RuntimeError, match="worker process failed to start.*rebuilt here"):
        ex.run(grid, str(tmp_path), jobs=2)


def test_a_method_registered_here_trains_in_this_process(toy_dataset, tmp_path):
    """Worker processes start from gblend's own registry, so a grid holding a method
    registered in this session (a student's remedy) warns and trains here instead."""
    from gblend.experiments import methods as gmethods

    naive = gmethods.get("naive")
    gmethods.register(gmethods.Method("naive_copy", "naive, registered here", naive.train,
                                      store="gblend", multi_head=False,
                                      batch_weights=naive.batch_weights))  # fmt: skip
    try:
        grid = ex.Grid.resolve("smoke", toy_dataset, methods=("naive", "naive_copy"),
                               seeds=2, combos="study")  # fmt: skip
        with pytest.warns(UserWarning, match="naive_copy"):
            res = ex.run(grid, str(tmp_path), jobs=2, progress=False)
    finally:
        gmethods.METHODS.pop("naive_copy")
    assert sorted(res.runs.method) == ["naive", "naive", "naive_copy", "naive_copy"]
    assert "naive_copy" not in gmethods.BUILTIN


def test_a_search_chooses_each_groups_best_val_setting_and_the_grid_keeps_it(tmp_path):
    from gblend.experiments import registry, selection

    entry = registry.Experiment(
        "search_test", "none", "none", ("naive", "dropout"), "study", datasets="mfeat",
        axes=(("dropout.rate", (0.5, 0.2)),), select=("dropout.rate",),
    )  # fmt: skip
    search = entry.search_grid("smoke")
    assert search.methods == ("dropout",) and search.seeds == (1000,)
    with pytest.raises(ex.GridError, match="run the search first"):
        entry.grid("smoke", results_dir=str(tmp_path))
    ex.run(search, str(tmp_path), progress=False)
    table = entry.search("smoke", str(tmp_path))
    assert table.chosen.sum() == 1
    best = table.loc[table.val_acc.idxmax()]
    assert table[table.chosen].candidate.item() == best.candidate or (
        table.val_acc.nunique() == 1 and table[table.chosen].candidate.item() == "dropout.rate=0.5"
    )
    grid = entry.grid("smoke", results_dir=str(tmp_path))
    kept = [u for u in grid if u.method == "dropout"]
    assert [u.model.dropout for u in kept] == [float(best.candidate.split("=")[1])]
    assert [u.method for u in grid].count("naive") == 1  # a method without a search stays
    assert selection.choice(kept[0]) in grid.only
