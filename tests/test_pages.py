"""Pages at the ``published`` scale: each data set at the largest scale whose results are
committed for it, one scale per data set, and the scorecard's pending cells glued."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gblend import cli, pages
from gblend.experiments import registry


def _done_for(done: set[tuple[str, str]]):
    """A stand-in for ``registry._done``: complete exactly for ``(experiment, data set)``
    pairs at full (a whole grid where each of its data sets is), for nothing at any other
    scale."""

    def fake(entry, scale, datasets, results_dir):
        names = datasets.split(",") if datasets else entry.grid(scale, selected=False).datasets
        return scale == "full" and all((entry.name, d) in done for d in names)

    return fake


def test_published_plan_takes_full_per_data_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # table3 runs synthetic at cpu and every data set at full
    monkeypatch.setattr(registry, "_done", _done_for({("table3", "mfeat")}))
    assert registry.published_plan(["table3"]) == {"synthetic": "cpu", "mfeat": "full"}
    monkeypatch.setattr(registry, "_done", _done_for(set()))
    assert registry.published_plan(["table3"]) == {"synthetic": "cpu"}


def test_published_plan_needs_every_experiment_of_the_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = ["figure1", "mid_fusion"]
    monkeypatch.setattr(registry, "_done", _done_for({("figure1", "mfeat")}))
    assert registry.published_plan(names)["mfeat"] == "cpu"  # mid_fusion's mfeat is not in
    both = {("figure1", "mfeat"), ("mid_fusion", "mfeat")}
    monkeypatch.setattr(registry, "_done", _done_for(both))
    assert registry.published_plan(names) == {"synthetic": "cpu", "mfeat": "full"}


def test_published_scale_is_mixed_only_in_between(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = tmp_path / "table3_optimizers.ipynb"
    monkeypatch.setattr(registry, "_done", _done_for(set()))
    assert cli.resolve_scale("published", nb, tmp_path) == "cpu"
    monkeypatch.setattr(registry, "_done", _done_for({("table3", "mfeat")}))
    assert cli.resolve_scale("published", nb, tmp_path) == "published"
    every = {("table3", d) for d in ("synthetic", "avdigits", "hapt", "mfeat")}
    monkeypatch.setattr(registry, "_done", _done_for(every))
    assert cli.resolve_scale("published", nb, tmp_path) == "full"


def test_a_page_opens_one_grid_per_experiment_and_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    both = {("figure1", "mfeat"), ("mid_fusion", "mfeat")}
    monkeypatch.setattr(registry, "_done", _done_for(both))
    requests = pages._requests(["figure1", "mid_fusion"], "published", "all", None)
    assert requests == [
        ("figure1", "full", "mfeat"),
        ("figure1", "cpu", "synthetic"),
        ("mid_fusion", "full", "mfeat"),
        ("mid_fusion", "cpu", "synthetic"),
    ]
    assert pages._requests(["figure1"], "published", "mfeat", None) == [
        ("figure1", "full", "mfeat")
    ]
    assert pages._requests(["figure1"], "cpu", "all", None) == [("figure1", "cpu", "all")]


def test_verdicts_of_data_sets_still_at_full_only_are_glued_as_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    glued: dict[str, str] = {}
    monkeypatch.setattr(
        pages, "_glue", lambda name, value, display=False: glued.update({name: value})
    )
    grid = registry.get("table3").grid("cpu", selected=False)
    page = pages.Page("table3", grid, results=None)  # type: ignore[arg-type]
    verdicts = pd.DataFrame(
        [{"dataset": "synthetic", "claim": 14, "variant": "", "verdict": "partly"}]
    )
    page.glue_verdicts(verdicts)
    assert glued == {
        "verdict_synthetic_claim14": "partly",
        "verdict_avdigits_claim14": pages.FULL_SCALE_ONLY,
        "verdict_hapt_claim14": pages.FULL_SCALE_ONLY,
        "verdict_mfeat_claim14": pages.FULL_SCALE_ONLY,
    }
    assert page.scale_text() == "cpu"
