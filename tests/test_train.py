import copy
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from gblend.models import JOINT, FusionNet, ModelConfig
from gblend.train import EVAL_SPLITS, TrainConfig, Trainer, resolve_device

SPECS = {
    "a": SimpleNamespace(kind="vector", shape=(8,)),
    "b": SimpleNamespace(kind="vector", shape=(6,)),
}


def tiny_task(n: int = 300, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = {"a": torch.randn(n, 8, generator=gen), "b": torch.randn(n, 6, generator=gen)}
    x["a"][:, :3] += 3.0 * torch.nn.functional.one_hot(y, 3)  # modality a carries the class
    order = np.random.default_rng(seed).permutation(n)
    splits = {
        "train": order[:200],
        "heldout": order[200:230],
        "val": order[230:260],
        "test": order[260:],
    }
    return x, y, splits


def fit(epochs=8, heads=False, weights=None, **cfg):
    x, y, splits = tiny_task()
    torch.manual_seed(0)
    model = FusionNet(SPECS, 3, ModelConfig(modality_heads=heads, hidden=16, feature_dim=8))
    config = TrainConfig(
        **{"epochs": epochs, "batch_size": 32, "lr": 0.05, "train_subset_size": 100, **cfg}
    )
    return Trainer(config).fit(model, x, y, splits, loss_weights=weights)


def test_loss_falls_and_accuracy_rises_on_a_learnable_task():
    hist = fit(epochs=10).history_
    train = hist[(hist.split == "train_subset") & (hist["head"] == JOINT)].set_index("epoch")
    assert train.loss[10] < 0.5 * train.loss[0]
    test = hist[(hist.split == "test") & (hist["head"] == JOINT)].set_index("epoch")
    assert test.acc[10] > 0.8


def test_same_seed_gives_the_same_history_bit_for_bit():
    a, b = fit(6), fit(6)
    assert a.history_.equals(b.history_)
    c = fit(6, seed=1)
    assert not a.history_.equals(c.history_)


def test_history_has_every_epoch_head_and_split():
    tr = fit(epochs=4, heads=True)
    hist = tr.history_
    assert sorted(hist.epoch.unique()) == [0, 1, 2, 3, 4]
    assert set(hist.split) == set(EVAL_SPLITS)
    assert set(hist["head"]) == {"a", "b", JOINT}
    assert len(hist) == 5 * 4 * 3
    assert hist[["loss", "acc"]].notna().all().all()


def test_a_head_with_zero_weight_is_not_trained():
    x, y, splits = tiny_task()
    torch.manual_seed(0)
    model = FusionNet(SPECS, 3, ModelConfig(modality_heads=True, hidden=16, feature_dim=8))
    before = model.modality_heads["b"].weight.detach().clone()
    trained_before = model.modality_heads["a"].weight.detach().clone()
    Trainer(TrainConfig(epochs=2, batch_size=32)).fit(
        model, x, y, splits, loss_weights={"a": 0.5, "b": 0.0, JOINT: 0.5}
    )
    assert torch.equal(model.modality_heads["b"].weight.cpu(), before)
    assert not torch.equal(model.modality_heads["a"].weight.cpu(), trained_before)


def test_best_val_epoch_is_restored_and_early_stopping_stops():
    tr = fit(epochs=30, patience=2, lr_milestones=())
    hist = tr.history_
    val = hist[(hist.split == "val") & (hist["head"] == JOINT) & (hist.epoch > 0)]
    assert tr.best_epoch_ == int(val.loc[val.acc.idxmax(), "epoch"])
    assert tr.epochs_run_ <= tr.best_epoch_ + 2


def _pooled(per_class, labels):
    """The overall accuracy from per-class accuracies: weighted by each class's count."""
    counts = np.bincount(labels, minlength=len(per_class))
    return sum(a * n for a, n in zip(per_class, counts, strict=True) if a is not None) / len(labels)


def test_per_class_accuracy_is_measured_at_the_last_and_the_best_val_epoch():
    tr = fit(epochs=8, heads=True)
    assert tr.best_epoch_ < tr.epochs_run_  # two different models to tell apart
    x, y, splits = tiny_task()
    best_weights = copy.deepcopy(tr.model_.state_dict())
    per_class = tr.class_accuracy()
    hist = tr.history_.set_index(["epoch", "head", "split"]).acc
    differs = False
    for selection, epoch in (("last", tr.epochs_run_), ("best_val", tr.best_epoch_)):
        for split in ("val", "test"):
            labels = y[splits[split]].numpy()
            for head in tr.heads_:
                assert len(per_class[selection][split][head]) == 3
                pooled = _pooled(per_class[selection][split][head], labels)
                assert pooled == pytest.approx(hist[epoch, head, split])
                differs |= hist[tr.epochs_run_, head, split] != hist[tr.best_epoch_, head, split]
    assert differs
    for k, v in tr.model_.state_dict().items():  # measuring leaves the best weights in place
        assert torch.equal(v, best_weights[k])
    kept_last = fit(epochs=8, heads=True, restore_best=False).class_accuracy()
    assert kept_last.keys() == {"last"} and kept_last["last"] == per_class["last"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adagrad"])
def test_each_optimizer_trains(optimizer):
    tr = fit(epochs=3, optimizer=optimizer, lr=0.01)
    assert tr.history_.loss.notna().all()


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="sgd, adam, adagrad"):
        fit(epochs=1, optimizer="rmsprop")
    with pytest.raises(ValueError, match="unknown heads"):
        fit(epochs=1, weights={"nope": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        fit(epochs=1, heads=True, weights={"a": -1.0, JOINT: 1.0})
    x, y, splits = tiny_task()
    model = FusionNet(SPECS, 3)
    with pytest.raises(ValueError, match="heldout"):
        Trainer().fit(model, x, y, {"train": splits["train"]})


def test_auto_device_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"


# --- the Trainer is the reference: bit for bit the plain loop it always was -------------------

SEQ_SPECS = {**SPECS, "b": SimpleNamespace(kind="sequence", shape=(6, 2))}


def seq_task(n: int = 300, seed: int = 0):
    x, y, splits = tiny_task(n, seed)
    x["b"] = torch.randn(n, 6, 2, generator=torch.Generator().manual_seed(seed + 1))
    return x, y, splits


def reference_run(model, x, y, splits, cfg, segments):
    """A straightforward training loop written without gblend.loop: torch.optim, MultiStepLR,
    a seeded randperm per epoch, T' from the seed, best val epoch, patience, restore.
    ``segments``: (epochs, loss weights or None, record every epoch) per train_epochs call."""
    torch.manual_seed(cfg.seed)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    make = {
        "sgd": lambda p: torch.optim.SGD(
            p, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        ),
        "adam": lambda p: torch.optim.Adam(p, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "adagrad": lambda p: torch.optim.Adagrad(p, lr=cfg.lr, weight_decay=cfg.weight_decay),
    }
    optimizer = make[cfg.optimizer.lower()](model.parameters())
    schedule = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, list(cfg.lr_milestones), cfg.lr_gamma
    )
    train = torch.as_tensor(splits["train"])
    size = min(cfg.train_subset_size, len(train))
    subset = np.sort(np.random.default_rng(cfg.seed).choice(len(train), size, replace=False))
    sets = {"train_subset": train[torch.as_tensor(subset)]}
    sets |= {s: torch.as_tensor(splits[s]) for s in ("heldout", "val", "test")}
    rows = []

    @torch.no_grad()
    def record(epoch):
        model.eval()
        for split, idx in sets.items():
            for head, logits in model({m: t[idx] for m, t in x.items()}).items():
                loss = float(torch.nn.functional.cross_entropy(logits, y[idx], reduction="sum"))
                acc = int((logits.argmax(1) == y[idx]).sum())
                rows.append(
                    {
                        "epoch": epoch,
                        "head": head,
                        "split": split,
                        "loss": loss / len(idx),
                        "acc": acc / len(idx),
                    }
                )
        model.train()
        return next(
            r["acc"] for r in rows[::-1] if r["split"] == "val" and r["head"] == cfg.select_head
        )

    record(0)
    heads = list(dict.fromkeys(r["head"] for r in rows))
    epoch, best, best_acc, best_state, stopped = 0, 0, -1.0, None, False
    for n, weights, every in segments:
        weights = weights or dict.fromkeys(heads, 1.0)
        last = epoch + n
        while epoch < last and not stopped:
            epoch += 1
            model.train()
            passes = range(cfg.passes_per_epoch)
            order = torch.cat([torch.randperm(len(train), generator=shuffle) for _ in passes])
            for start in range(0, len(order), cfg.batch_size):
                batch = train[order[start : start + cfg.batch_size]]
                logits = model({m: t[batch] for m, t in x.items()})
                loss = sum(
                    w * torch.nn.functional.cross_entropy(logits[h], y[batch])
                    for h, w in weights.items()
                    if w > 0
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            schedule.step()
            if every or epoch == last:
                acc = record(epoch)
                if acc > best_acc:
                    best_acc, best = acc, epoch
                    if cfg.restore_best:
                        best_state = copy.deepcopy(model.state_dict())
                if cfg.patience is not None and epoch - best >= cfg.patience:
                    stopped = True
    if best_state is not None:
        model.load_state_dict(best_state)
    return pd.DataFrame(rows), best, epoch, optimizer.param_groups[0]["lr"]


REFERENCE_CASES = {
    # SGD, gamma 0.1 over a milestone at 0, a repeated one and one more: the rounding of
    # MultiStepLR's repeated multiplication matters (0.05 * 0.1**4 is not 5e-6 exactly)
    "sgd_milestones": (dict(lr_milestones=(0, 2, 2, 4), lr_gamma=0.1), [(6, {JOINT: 1.0}, True)]),
    "adam_weights": (
        dict(optimizer="Adam", lr=0.01, seed=3),
        [(5, {"a": 0.2, "b": 0.3, JOINT: 0.5}, True)],
    ),
    "adagrad_default_weights": (dict(optimizer="adagrad", lr=0.02), [(4, None, True)]),
    "patience_dropout": (dict(patience=2, seed=1), [(30, {JOINT: 1.0}, True)]),
    "twice_with_schedule": (
        dict(lr_milestones=(3,), seed=5),
        [(2, {JOINT: 1.0}, True), (3, {"a": 0.6, "b": 0.1, JOINT: 0.3}, True)],
    ),
    "last_epoch_only": (
        dict(restore_best=False, select_head="a", momentum=0.0, weight_decay=0.0),
        [(3, {"a": 1.0, "b": 0.0}, False), (2, None, True)],
    ),
    "patience_across_calls": (dict(patience=1), [(3, None, False), (5, {JOINT: 1.0}, True)]),
    # a thinned train split: an epoch is three shuffled passes over train
    "three_passes_per_epoch": (dict(passes_per_epoch=3, seed=2), [(3, {JOINT: 1.0}, True)]),
}


@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_trainer_is_bit_for_bit_the_plain_training_loop(case):
    overrides, segments = REFERENCE_CASES[case]
    x, y, splits = seq_task()
    config = TrainConfig(
        **{"batch_size": 32, "lr": 0.05, "train_subset_size": 100, "device": "cpu", **overrides}
    )

    def net():
        torch.manual_seed(0)
        dropout = 0.3 if "dropout" in case else 0.0
        return FusionNet(
            SEQ_SPECS,
            3,
            ModelConfig(modality_heads=True, hidden=16, feature_dim=8, dropout=dropout),
        )

    hist, best, epochs, lr = reference_run(net(), x, y, splits, config, segments)
    trainer = Trainer(config).start(net(), x, y, splits)
    for n, weights, every in segments:
        trainer.train_epochs(n, weights, record_every_epoch=every)
    trainer.finish()
    pd.testing.assert_frame_equal(trainer.history_, hist, check_exact=True)
    assert (trainer.best_epoch_, trainer.epochs_run_, trainer.lr_) == (best, epochs, lr)


# --- the contract shared with the batched trainer --------------------------------------------


def test_a_non_finite_training_loss_stops_with_the_epoch_named():
    with pytest.raises(FloatingPointError, match="at epoch 1"):
        fit(epochs=3, lr=1e30)
