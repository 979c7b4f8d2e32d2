"""What every run trains on and with, generated for the datasets page: the setup table of each
data set at a scale, and the facts about the data a reader needs to judge the results
(subjects per split, reused clips, what the scales share).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from gblend import data as gdata
from gblend.experiments.grid import Unit
from gblend.experiments.registry import get
from gblend.experiments.runner import load_unit_data
from gblend.models import FusionNet, make_encoder


def study_unit(dataset: str, scale: str) -> Unit:
    """The naive run of a data set's study modalities in the Table 1 grid at ``scale``."""
    units = list(get("table1").grid(scale, dataset, seeds=1))
    return max(units, key=lambda u: len(u.modalities))


def setup_table(scale: str, datasets: Sequence[str] = gdata.BUILTIN_DATASETS) -> pd.DataFrame:
    """One row per data set: its study modalities and their encoders, the model's size and the
    training settings every method of the study uses, and the split sizes (seed 0)."""
    rows = []
    for name in datasets:
        unit = study_unit(name, scale)
        dataset = load_unit_data(unit)
        cfg, model = unit.train, unit.model
        encoders = ", ".join(
            f"{m}: {type(make_encoder(dataset.specs[m], model)).__name__} "
            f"{tuple(dataset.specs[m].shape)}"
            for m in unit.modalities
        )
        net = FusionNet(dataset.specs, dataset.n_classes, model)
        schedule = (
            f"x{cfg.lr_gamma} after epoch {', '.join(map(str, cfg.lr_milestones))}"
            if cfg.lr_milestones
            else "constant"
        )
        rows.append(
            {
                "dataset": name,
                "modalities (encoder, input shape)": encoders,
                "classes": dataset.n_classes,
                "feature / hidden / fusion width": f"{model.feature_dim} / {model.hidden} / "
                f"{model.fusion_hidden}",
                "parameters (naive model)": sum(p.numel() for p in net.parameters()),
                "optimizer": f"{cfg.optimizer} (momentum {cfg.momentum}, weight decay "
                f"{cfg.weight_decay})",
                "lr": cfg.lr,
                "schedule": schedule,
                "epochs": cfg.epochs,
                "batch": cfg.batch_size,
                "T' size": cfg.train_subset_size,
                **{f"{s} size": len(idx) for s, idx in dataset.splits.items()},
            }
        )
    return pd.DataFrame(rows)


def hapt_subjects(scale: str) -> pd.DataFrame:
    """hapt's subjects per split (seed 0): the splits are made by subject."""
    dataset = load_unit_data(study_unit("hapt", scale))
    subjects = dataset.info["split_subjects"]
    return pd.DataFrame(
        [
            {"split": s, "subjects": len(ids), "ids": ", ".join(map(str, ids))}
            for s, ids in subjects.items()
        ]
    )


def avdigits_clip_reuse(scale: str) -> pd.DataFrame:
    """How many samples share each spoken-digit clip, per split (seed 0): every image gets a
    clip of its class from its own split, so clips are reused, within one split only."""
    dataset = load_unit_data(study_unit("avdigits", scale))
    clip = np.asarray(dataset.info["clip_index"])
    rows = []
    for split, idx in dataset.splits.items():
        uses = Counter(clip[idx].tolist())
        rows.append(
            {
                "split": split,
                "samples": len(idx),
                "distinct clips": len(uses),
                "uses per clip (mean)": len(idx) / len(uses),
                "uses per clip (max)": max(uses.values()),
            }
        )
    return pd.DataFrame(rows)


def shared_across_scales(
    datasets: Sequence[str] = gdata.BUILTIN_DATASETS, scales: Sequence[str] = ("cpu", "full")
) -> pd.DataFrame:
    """Per data set: whether the scales train on the same data (seed 0 fingerprints) and which
    seeds they share: where both hold, a larger scale is not an independent replication."""
    rows = []
    for name in datasets:
        units = {s: study_unit(name, s) for s in scales}
        prints = {s: load_unit_data(u).fingerprint for s, u in units.items()}
        seeds = [set(get("table1").grid(s, name).seeds) for s in scales]
        rows.append(
            {
                "dataset": name,
                "same data at every scale": len(set(prints.values())) == 1,
                "seeds shared": ", ".join(map(str, sorted(set.intersection(*seeds)))),
            }
        )
    return pd.DataFrame(rows)
