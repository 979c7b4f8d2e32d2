"""Train several independent runs of one architecture together, as one stacked model.

The study is a grid of many small runs; one at a time they leave a GPU idle and a CPU core
busy with Python. Here R runs that share an architecture and a :class:`TrainConfig` but differ
in seed (initial weights, shuffling, and their own data split), loss weights and learning rate
are trained in one process:
their parameters are stacked (``torch.func.stack_module_state``) and every step evaluates all
R models with ``vmap``. Each run keeps its own data, mini-batch order, optimizer state, best
epoch and early stopping, and gets its own history, exactly as :class:`gblend.train.Trainer`
would record it; parameters a run's loss does not reach are not stepped (no weight decay
either), as PyTorch's optimizers skip parameters without a gradient.

Same seeds give the same runs as training them one at a time, up to floating-point rounding
(batched matrix products sum in another order); ``tests/test_batched.py`` states the tolerance.
Dropout draws differ from the single-run trainer (``vmap`` draws its own random numbers).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap
from torch.nn import functional as F

from gblend.train import OPTIMIZERS, REQUIRED_SPLITS, TRAIN_SUBSET, TrainConfig, resolve_device


@dataclass
class RunData:
    """One run's data: per-modality tensors, labels and its own split indices."""

    x: Mapping[str, torch.Tensor]
    y: torch.Tensor
    splits: Mapping[str, np.ndarray]


def _pad_indices(
    indices: Sequence[torch.Tensor], width: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack index vectors of different lengths on the host: (R, W) indices padded with 0, and
    their mask; W is ``width``, or the longest length when 0."""
    width = width or max(1, max(len(i) for i in indices))
    out = torch.zeros(len(indices), width, dtype=torch.long)
    mask = torch.zeros(len(indices), width)
    for r, idx in enumerate(indices):
        out[r, : len(idx)] = idx
        mask[r, : len(idx)] = 1.0
    return out, mask


def _epoch_batches(
    orders: Sequence[torch.Tensor], batch_size: int, device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One epoch's mini-batches of every run, built on the host and moved once.

    Returns indices and mask of shape (steps, R, batch_size) and which runs have a batch at
    each step, (steps, R). A run with fewer steps is padded with empty (masked) batches.
    """
    steps = max(1, max(math.ceil(len(o) / batch_size) for o in orders))
    idx, mask = _pad_indices(orders, steps * batch_size)
    idx = idx.view(len(orders), steps, batch_size).transpose(0, 1).contiguous()
    mask = mask.view(len(orders), steps, batch_size).transpose(0, 1).contiguous()
    return idx.to(device), mask.to(device), mask.amax(dim=2).to(device)


def _used_parameters(model: nn.Module, heads: Sequence[str], x: Mapping[str, torch.Tensor]):
    """Names of the parameters that the loss of ``heads`` reaches. The others get no gradient
    in :class:`Trainer` (``None``), so PyTorch's optimizers leave them alone: no weight decay,
    no step."""
    model.zero_grad(set_to_none=True)
    logits = model(x)
    sum(logits[h].sum() for h in heads).backward()
    used = {name for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return used


class _FlatParameters:
    """The stacked parameters as views into one (R, P) buffer, so that an optimizer step is a
    few whole-buffer operations rather than several per parameter tensor (on a GPU each
    operation is a kernel launch, and launches, not arithmetic, bound these small models)."""

    def __init__(self, params: Mapping[str, torch.Tensor]) -> None:
        self.runs = next(iter(params.values())).shape[0]
        self.sizes = {name: p[0].numel() for name, p in params.items()}
        self.flat = torch.cat([p.reshape(self.runs, -1) for p in params.values()], dim=1)
        self.views = self.unflatten(self.flat, params)

    def unflatten(self, flat: torch.Tensor, like: Mapping[str, torch.Tensor]):
        views, start = {}, 0
        for name, size in self.sizes.items():
            views[name] = flat[:, start : start + size].view(like[name].shape)
            start += size
        return views

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([tensors[name].reshape(self.runs, -1) for name in self.sizes], dim=1)

    def per_name(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(R, P) from one (R,) vector per parameter name."""
        return torch.cat(
            [values[name][:, None].expand(-1, size) for name, size in self.sizes.items()], dim=1
        )


class _Optimizer:
    """SGD with momentum, Adam and AdaGrad on the flat (R, P) parameters, with PyTorch's update
    rules, applied only to the runs that are active at this step and, in each run, only to the
    parameters its loss reaches (``used``, (R, P); the others stay untouched).

    On a GPU the whole buffer is updated at once (few kernel launches); on a CPU column by
    column block, small enough to stay in cache between the update's dozen passes."""

    CPU_BLOCK_BYTES = 1 << 19

    def __init__(self, flat: torch.Tensor, config: TrainConfig, used: torch.Tensor) -> None:
        if config.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {config.optimizer!r}; valid: {OPTIMIZERS}")
        self.config = config
        runs, size = flat.shape
        self.used = None if bool(used.all()) else used.bool()  # None: every parameter is used
        names = {"sgd": ("buf",) if config.momentum else (), "adam": ("m", "v")}
        self.state = {k: torch.zeros_like(flat) for k in names.get(config.optimizer, ("sum",))}
        self.steps = torch.zeros(runs, 1, device=flat.device)
        width = size if flat.device.type != "cpu" else max(1, self.CPU_BLOCK_BYTES // (4 * runs))
        self.blocks = [slice(a, min(a + width, size)) for a in range(0, size, width)]

    @torch.no_grad()
    def step(self, p: torch.Tensor, g: torch.Tensor, lrs: torch.Tensor, active: torch.Tensor):
        """Update ``p`` (R, P) in place; ``lrs`` and ``active``: one value per run, (R,)."""
        self.steps += active[:, None]
        first = self.steps == 1
        run_on = active[:, None].bool()
        for cols in self.blocks:
            on = run_on if self.used is None else run_on & self.used[:, cols]
            state = {k: v[:, cols] for k, v in self.state.items()}
            self._update(p[:, cols], g[:, cols], lrs[:, None], on, first, state)

    def _update(self, p, g, lr, on, first, state) -> None:
        cfg = self.config
        if cfg.weight_decay:
            g = g + cfg.weight_decay * p
        if cfg.optimizer == "sgd":
            if cfg.momentum:
                buf = state["buf"]
                buf.copy_(torch.where(on, torch.where(first, g, cfg.momentum * buf + g), buf))
                g = buf
            p.copy_(torch.where(on, p - lr * g, p))
        elif cfg.optimizer == "adam":
            beta1, beta2, eps = 0.9, 0.999, 1e-8
            m, v = state["m"], state["v"]
            m.copy_(torch.where(on, beta1 * m + (1 - beta1) * g, m))
            v.copy_(torch.where(on, beta2 * v + (1 - beta2) * g * g, v))
            t = self.steps.clamp(min=1)
            denom = (v.sqrt() / torch.sqrt(1 - beta2**t)) + eps
            p.copy_(torch.where(on, p - (lr / (1 - beta1**t)) * m / denom, p))
        else:  # adagrad
            total = state["sum"]
            total.copy_(torch.where(on, total + g * g, total))
            p.copy_(torch.where(on, p - lr * g / (total.sqrt() + 1e-10), p))


class BatchedTrainer:
    """Train R runs of one architecture at once; the batched twin of :class:`Trainer`.

    ``fit(models, data, seeds, loss_weights, lrs=None)``: ``models[r]`` is run r's freshly
    initialised model (same architecture for all), ``data[r]`` its data and ``seeds[r]`` its
    seed (the config's own ``seed`` is not used); ``loss_weights`` is one mapping head ->
    weight for all runs or one per run, ``lrs`` one base learning rate per run (default: the
    config's ``lr`` for all; the schedule applies to each). After ``fit``: ``models_``,
    ``histories_``, ``best_epochs_``, ``epochs_run_`` (lists, one entry per run),
    ``train_seconds_``, ``seconds_`` and ``device_``.
    """

    def __init__(self, config: TrainConfig | None = None) -> None:
        self.config = config or TrainConfig()

    def fit(
        self,
        models: Sequence[nn.Module],
        data: Sequence[RunData],
        seeds: Sequence[int],
        loss_weights: Mapping[str, float] | Sequence[Mapping[str, float]],
        lrs: Sequence[float] | None = None,
    ) -> BatchedTrainer:
        cfg = self.config
        runs = len(models)
        if not runs or len(data) != runs or len(seeds) != runs:
            raise ValueError("models, data and seeds must be equally long and not empty")
        for d in data:
            missing = [s for s in REQUIRED_SPLITS if s not in d.splits]
            if missing:
                raise ValueError(f"splits lack {missing}; need {', '.join(REQUIRED_SPLITS)}")
        started = time.perf_counter()
        device = resolve_device(cfg.device)
        self.device_ = str(device)
        per_run = [loss_weights] * runs if isinstance(loss_weights, Mapping) else loss_weights
        base_lrs = [cfg.lr] * runs if lrs is None else list(lrs)
        if len(per_run) != runs or len(base_lrs) != runs:
            raise ValueError("give one loss-weight mapping and one learning rate per run")
        # heads with a positive weight in some run; a run's other heads get weight 0
        heads = sorted({h for w in per_run for h, v in w.items() if v > 0})
        weights = torch.tensor([[w.get(h, 0.0) for h in heads] for w in per_run], device=device)
        run_lrs = torch.tensor(base_lrs, device=device)

        # Each run's data, padded to a common number of samples and stacked: (R, N, ...).
        modalities = list(data[0].x)
        size = max(len(d.y) for d in data)
        xs = {
            m: torch.stack(
                [F.pad(d.x[m], (*[0, 0] * (d.x[m].dim() - 1), 0, size - len(d.y))) for d in data]
            ).to(device)
            for m in modalities
        }
        ys = torch.stack([F.pad(d.y, (0, size - len(d.y))) for d in data]).to(device)
        train = [torch.as_tensor(np.asarray(d.splits["train"]), dtype=torch.long) for d in data]
        eval_sets = {}
        for r, (d, seed) in enumerate(zip(data, seeds, strict=True)):
            rng = np.random.default_rng(seed)
            n = min(cfg.train_subset_size, len(train[r]))
            subset = np.sort(rng.choice(len(train[r]), size=n, replace=False))
            eval_sets.setdefault(TRAIN_SUBSET, []).append(train[r][torch.as_tensor(subset)])
            for split in ("heldout", "val", "test"):
                idx = torch.as_tensor(np.asarray(d.splits[split]), dtype=torch.long)
                eval_sets.setdefault(split, []).append(idx)
        eval_index = {s: tuple(t.to(device) for t in _pad_indices(v)) for s, v in eval_sets.items()}

        base = copy.deepcopy(models[0]).to("meta")
        params, buffers = stack_module_state([m.to(device) for m in models])
        stacked = _FlatParameters({k: v.detach() for k, v in params.items()})
        params = stacked.views  # every step updates stacked.flat, so these views follow
        run_index = torch.arange(runs, device=device)

        def run_logits(p, b, x):
            return functional_call(base, (p, b), (x,))

        def run_loss(p, b, w, x, y, mask):
            logits = run_logits(p, b, x)
            total = 0.0
            for i, head in enumerate(heads):
                per_sample = F.cross_entropy(logits[head], y, reduction="none")
                total = total + w[i] * (per_sample * mask).sum() / mask.sum().clamp(min=1)
            return total

        gradients = vmap(grad(run_loss), randomness="different")
        batched_logits = vmap(run_logits, randomness="different")
        sample = {m: t[:2].to(device) for m, t in data[0].x.items()}
        used_by_run = [
            _used_parameters(model, [h for h, v in w.items() if v > 0], sample)
            for model, w in zip(models, per_run, strict=True)
        ]
        used = stacked.per_name(
            {
                name: torch.tensor([float(name in u) for u in used_by_run], device=device)
                for name in params
            }
        )
        optimizer = _Optimizer(stacked.flat, cfg, used)
        shuffles = [torch.Generator().manual_seed(s) for s in seeds]
        rows: list[list[dict]] = [[] for _ in range(runs)]
        best_acc = [-1.0] * runs
        self.best_epochs_ = [0] * runs
        self.epochs_run_ = [0] * runs
        best_flat = stacked.flat.clone()
        active = [True] * runs  # on the host, so that checking it never waits for the device
        active_runs = torch.ones(runs, device=device)

        @torch.no_grad()
        def record(epoch: int) -> list[float | None]:
            base.eval()
            val_acc: list[float | None] = [None] * runs
            for split, (idx, mask) in eval_index.items():
                sums: dict[str, torch.Tensor] = {}
                hits: dict[str, torch.Tensor] = {}
                for start in range(0, idx.shape[1], cfg.eval_batch_size):
                    b_idx = idx[:, start : start + cfg.eval_batch_size]
                    b_mask = mask[:, start : start + cfg.eval_batch_size]
                    x = {m: t[run_index[:, None], b_idx] for m, t in xs.items()}
                    target = ys[run_index[:, None], b_idx]
                    for head, logit in batched_logits(params, buffers, x).items():
                        loss = F.cross_entropy(
                            logit.flatten(0, 1), target.flatten(), reduction="none"
                        ).view_as(b_mask)
                        sums[head] = sums.get(head, 0) + (loss * b_mask).sum(1)
                        right = (logit.argmax(-1) == target).float() * b_mask
                        hits[head] = hits.get(head, 0) + right.sum(1)
                # One transfer per split, not one per number.
                counts = mask.sum(1).tolist()
                losses = {h: v.tolist() for h, v in sums.items()}
                rights = {h: v.tolist() for h, v in hits.items()}
                for r in range(runs):
                    if not active[r]:
                        continue
                    for head in sums:
                        acc = rights[head][r] / counts[r]
                        rows[r].append(
                            {
                                "epoch": epoch,
                                "head": head,
                                "split": split,
                                "loss": losses[head][r] / counts[r],
                                "acc": acc,
                            }
                        )
                        if split == "val" and head == cfg.select_head:
                            val_acc[r] = acc
            base.train()
            return val_acc

        record(0)
        train_seconds = 0.0
        for epoch in range(1, cfg.epochs + 1):
            if not any(active):
                break
            tick = time.perf_counter()
            decay = cfg.lr_gamma ** sum(epoch > m for m in cfg.lr_milestones)
            orders = [
                train[r][torch.randperm(len(train[r]), generator=shuffles[r])] for r in range(runs)
            ]
            # Indices live on the device for the whole epoch: no host work inside the step loop.
            epoch_idx, epoch_mask, has_batch = _epoch_batches(orders, cfg.batch_size, device)
            for idx, mask, present in zip(epoch_idx, epoch_mask, has_batch, strict=True):
                x = {m: t[run_index[:, None], idx] for m, t in xs.items()}
                target = ys[run_index[:, None], idx]
                grads = stacked.flatten(gradients(params, buffers, weights, x, target, mask))
                optimizer.step(stacked.flat, grads, run_lrs * decay, active_runs * present)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_seconds += time.perf_counter() - tick
            val_acc = record(epoch)
            for r in range(runs):
                if not active[r]:
                    continue
                self.epochs_run_[r] = epoch
                if val_acc[r] > best_acc[r]:
                    best_acc[r], self.best_epochs_[r] = val_acc[r], epoch
                    best_flat[r] = stacked.flat[r]
                if cfg.patience is not None and epoch - self.best_epochs_[r] >= cfg.patience:
                    active[r] = False
                    active_runs[r] = 0.0
        final = stacked.unflatten(best_flat, params) if cfg.restore_best else params
        self.models_ = []
        for r, model in enumerate(models):
            model.load_state_dict(
                {**{k: v[r] for k, v in final.items()}, **{k: v[r] for k, v in buffers.items()}}
            )
            self.models_.append(model)
        self.histories_ = [pd.DataFrame(r) for r in rows]
        self.train_seconds_ = train_seconds
        self.seconds_ = time.perf_counter() - started
        return self
