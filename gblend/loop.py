"""The one definition of a training run, shared by :class:`gblend.train.Trainer` and
:class:`gblend.batched.BatchedTrainer`.

A run is a :class:`~gblend.train.TrainConfig` (its ``seed`` and ``lr`` included), a model, the
data and its splits, and the loss weights. What a run *is* lives here, once:

* the checks: splits (:func:`check_splits`), the config (:func:`check_config`: epochs and batch
  size, and the optimizer name by :func:`optimizer_name`, case-insensitive) and the loss
  weights (:func:`check_loss_weights`: ``None`` means every head with weight 1; unknown heads,
  negative, non-finite or all-zero weights are errors);
* the data a run sees: T' drawn from the seed (:func:`split_indices`), and each epoch's
  mini-batch order (``passes_per_epoch`` shuffled passes over train) from a generator seeded
  with it (:meth:`Run.epoch_order`);
* the objective, the weighted sum of the heads' mean cross-entropies (:func:`weighted_loss`),
  or their combination by the model's learned ``loss_weighting`` where it has one;
* the learning-rate schedule (:func:`scheduled_lr`, PyTorch's ``MultiStepLR`` exactly);
* the bookkeeping (:class:`Run`): the history rows, the best val epoch of ``select_head``,
  patience and the stop flag, and the non-finite training-loss check;
* the epoch loop itself (:func:`train`).

How the mini-batches of the runs are computed is an :class:`Execution`: one model with a
PyTorch optimizer (:class:`~gblend.train.Trainer`, the reference), or R runs stacked and
``vmap``-ed (:class:`~gblend.batched.BatchedTrainer`, the same runs up to the floating-point
tolerance stated in ``tests/test_batched.py``).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from tqdm import tqdm

if TYPE_CHECKING:
    from gblend.train import TrainConfig

OPTIMIZERS = ("sgd", "adam", "adagrad")
TRAIN_SUBSET = "train_subset"  # T' in the paper: a fixed subset of train, for L^T
EVAL_SPLITS = (TRAIN_SUBSET, "heldout", "val", "test")
REQUIRED_SPLITS = ("train", "heldout", "val", "test")

Measured = Mapping[str, Mapping[str, tuple[float, float]]]  # split -> head -> (loss, acc)


def optimizer_name(config: TrainConfig) -> str:
    """The config's optimizer, lower-cased; an error unless it is one of ``OPTIMIZERS``."""
    name = config.optimizer.lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    return name


def check_config(config: TrainConfig) -> None:
    if config.epochs < 1 or config.batch_size < 1 or config.passes_per_epoch < 1:
        raise ValueError("epochs, batch_size and passes_per_epoch must be positive")
    optimizer_name(config)


def check_splits(splits: Mapping[str, np.ndarray]) -> None:
    missing = [s for s in REQUIRED_SPLITS if s not in splits]
    if missing:
        raise ValueError(f"splits lack {missing}; need {', '.join(REQUIRED_SPLITS)}")


def check_loss_weights(
    loss_weights: Mapping[str, float] | None, heads: Sequence[str]
) -> dict[str, float]:
    """The loss weights of a model with ``heads``; ``None`` means every head with weight 1."""
    weights = dict(loss_weights) if loss_weights is not None else dict.fromkeys(heads, 1.0)
    unknown = sorted(set(weights) - set(heads))
    if unknown:
        raise ValueError(f"loss weights for unknown heads {unknown}")
    if any(not np.isfinite(w) or w < 0 for w in weights.values()):
        raise ValueError(f"loss weights must be finite and >= 0, got {weights}")
    if not any(w > 0 for w in weights.values()):
        raise ValueError("at least one loss weight must be positive")
    return weights


def scheduled_lr(config: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (from 1): ``config.lr`` multiplied by ``lr_gamma``
    once per milestone m < epoch, in the order and rounding of PyTorch's ``MultiStepLR``
    stepped after every epoch."""
    lr = config.lr
    for milestone, count in sorted(Counter(config.lr_milestones).items()):
        if 0 <= milestone < epoch:
            lr = lr * config.lr_gamma**count
    return lr


def split_indices(
    splits: Mapping[str, np.ndarray], config: TrainConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Train indices and the evaluation sets (``EVAL_SPLITS``), on the host; T' is a sorted
    random subset of train of ``train_subset_size`` drawn from ``config.seed``."""
    check_splits(splits)
    index = {s: torch.as_tensor(np.asarray(splits[s]), dtype=torch.long) for s in splits}
    train = index["train"]
    rng = np.random.default_rng(config.seed)
    subset_size = min(config.train_subset_size, len(train))
    subset = np.sort(rng.choice(len(train), size=subset_size, replace=False))
    return train, {
        TRAIN_SUBSET: train[torch.as_tensor(subset)],
        **{s: index[s] for s in ("heldout", "val", "test")},
    }


def weighted_loss(logits, target, weights, mask=None, weighting=None):
    """sum_h w_h * (mean cross-entropy of head h), over the samples where ``mask`` is 1 when a
    mask is given. ``weights``: head -> weight, for the heads that enter the sum. A
    ``weighting`` module (a model's learned loss weights) combines those heads' losses
    instead, each multiplied by its fixed weight first."""

    def head_loss(head):
        if mask is None:
            return F.cross_entropy(logits[head], target)
        per_sample = F.cross_entropy(logits[head], target, reduction="none")
        return (per_sample * mask).sum() / mask.sum().clamp(min=1)

    if weighting is not None:
        return weighting({h: w * head_loss(h) for h, w in weights.items()})
    return sum(w * head_loss(h) for h, w in weights.items())


class Run:
    """The bookkeeping of one training run: data indices, shuffling, history, best epoch,
    patience. ``name`` only labels its errors."""

    def __init__(self, config: TrainConfig, splits: Mapping[str, np.ndarray], name: str = ""):
        check_config(config)
        self.config = config
        self.name = name
        self.train_index, self.eval_index = split_indices(splits, config)
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.rows: list[dict] = []
        self.heads: tuple[str, ...] = ()
        self.loss_weights: dict[str, float] = {}
        self.epochs_run = 0
        self.best_epoch, self.best_acc = 0, -1.0
        self.stopped = False

    @property
    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def set_loss_weights(self, loss_weights: Mapping[str, float] | None) -> dict[str, float]:
        self.loss_weights = check_loss_weights(loss_weights, self.heads)
        return self.loss_weights

    def lr(self, epoch: int) -> float:
        return scheduled_lr(self.config, epoch)

    def epoch_order(self) -> torch.Tensor:
        """The train indices in this epoch's (the next draws') order: ``passes_per_epoch``
        shuffled passes over train, one after the other."""
        n = len(self.train_index)
        passes = [
            torch.randperm(n, generator=self.shuffle) for _ in range(self.config.passes_per_epoch)
        ]
        return self.train_index[torch.cat(passes)]

    def trained(self, epoch: int, loss: float) -> None:
        """Epoch ``epoch`` was trained and its last mini-batch had loss ``loss``."""
        if not math.isfinite(loss):
            of = f" of {self.name}" if self.name else ""
            raise FloatingPointError(f"training loss is {loss} at epoch {epoch}{of}")
        self.epochs_run = epoch

    def record(self, epoch: int, measured: Measured) -> float:
        """Append the rows of one evaluation; return the val accuracy of ``select_head``."""
        select, val_acc = self.config.select_head, None
        for split, per_head in measured.items():
            for head, (loss, acc) in per_head.items():
                self.rows.append(
                    {"epoch": epoch, "head": head, "split": split, "loss": loss, "acc": acc}
                )
                if split == "val" and head == select:
                    val_acc = acc
        if not self.heads:
            self.heads = tuple(dict.fromkeys(r["head"] for r in self.rows))
        if val_acc is None:
            raise ValueError(f"select_head {select!r} is not a head of the model")
        return val_acc

    def judge(self, epoch: int, val_acc: float) -> bool:
        """Best-epoch tracking and patience; True when ``epoch`` is the new best."""
        improved = val_acc > self.best_acc
        if improved:
            self.best_acc, self.best_epoch = val_acc, epoch
        patience = self.config.patience
        if patience is not None and epoch - self.best_epoch >= patience:
            self.stopped = True
        return improved


class Execution(Protocol):
    """How the mini-batches of some runs are computed; :func:`train` does everything else."""

    def train_epoch(
        self, orders: Sequence[torch.Tensor | None], lrs: Sequence[float]
    ) -> Sequence[float]:
        """Train one epoch: run r on the train indices ``orders[r]`` in that order, cut into
        mini-batches of ``batch_size`` (``None``: run r has stopped and is left alone), at
        learning rate ``lrs[r]``. Return each run's last mini-batch loss (any value for a
        stopped run). Time spent here is the runs' training time."""

    def measure_runs(self, active: Sequence[bool]) -> Sequence[Measured | None]:
        """Per run, split -> head -> (mean loss, accuracy) on its ``EVAL_SPLITS`` in eval
        mode (``None`` for a run that is not active)."""

    def keep_best(self, run: int) -> None:
        """Remember run ``run``'s current weights as its best."""


def record(runs: Sequence[Run], execution: Execution, epoch: int) -> list[float | None]:
    """Measure and record every run that has not stopped; their val accuracies."""
    active = [not r.stopped for r in runs]
    measured = execution.measure_runs(active)
    return [
        r.record(epoch, m) if a else None for r, a, m in zip(runs, active, measured, strict=True)
    ]


def train(
    runs: Sequence[Run],
    execution: Execution,
    n: int,
    record_every_epoch: bool = True,
    progress: bool = False,
) -> float:
    """Train the runs that have not stopped ``n`` more epochs, in lockstep; return the seconds
    spent in ``execution.train_epoch``.

    Each epoch: the mini-batch order of every active run, its scheduled learning rate, one
    epoch of training, the non-finite loss check; then (every epoch, or only after the last
    of the ``n`` with ``record_every_epoch=False``) the measurement, best-epoch tracking and
    patience, and the best weights kept when ``restore_best``.
    """
    start = max(r.epochs_run for r in runs)
    last = start + n
    seconds = 0.0
    bar = tqdm(range(start + 1, last + 1), disable=not progress, desc="epochs")
    for epoch in bar:
        active = [not r.stopped for r in runs]
        if not any(active):
            break
        tick = time.perf_counter()
        orders = [r.epoch_order() if a else None for r, a in zip(runs, active, strict=True)]
        losses = execution.train_epoch(orders, [r.lr(epoch) for r in runs])
        seconds += time.perf_counter() - tick
        for r, a, loss in zip(runs, active, losses, strict=True):
            if a:
                r.trained(epoch, loss)
        if not (record_every_epoch or epoch == last):
            continue
        val_accs = record(runs, execution, epoch)
        for i, (r, val_acc) in enumerate(zip(runs, val_accs, strict=True)):
            if val_acc is not None and r.judge(epoch, val_acc) and r.config.restore_best:
                execution.keep_best(i)
        if len(runs) == 1:
            bar.set_postfix(val_acc=f"{val_accs[0]:.3f}", best=runs[0].best_epoch)
        else:
            bar.set_postfix(active=sum(not r.stopped for r in runs))
    return seconds
