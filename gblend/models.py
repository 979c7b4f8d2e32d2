"""Per-modality encoders, late fusion and the multi-head model of the paper (Fig. 2).

One class, :class:`FusionNet`, covers all three set-ups of the paper's Figure 2:

* a uni-modal network (Fig. 2a) is a ``FusionNet`` over one modality;
* naive late fusion (Fig. 2b) concatenates the encoders' features and feeds the paper's
  two-FC head followed by a prediction layer (paper §3: "a two-FC-layer network on
  concatenated features ... followed by one prediction layer");
* the multi-head model (Fig. 2c) adds one linear classifier per modality on that modality's
  features, as the authors' code does with ``g_blend=True``.

Using one architecture for all three keeps the comparison fair: the uni-modal network is the
multi-modal one with every other modality removed. The model knows nothing about training:
``forward`` returns logits for every head and the trainer decides which losses to use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

JOINT = "joint"  # name of the fused head; per-modality heads are named after their modality
# How the encoders' features meet (the paper's Figure 1 fusion baselines): concatenation
# (late), concatenation one layer earlier, before each encoder's last layer, which becomes one
# layer shared by the modalities (mid), or concatenation after each modality's features are
# gated by the others' (squeeze-and-excitation) or attend to them (non-local attention over
# one token per modality), or a low-rank multiplicative fusion of the features (LMF)
FUSIONS = ("late", "mid", "se_gate", "nl_gate", "lmf")
# LMF's rank: its authors (Liu et al. 2018) find ranks 1-16 alike and use small ones
LMF_RANK = 4


class InputSpec(Protocol):
    """What a model needs to know about a modality (``gblend.data.ModalitySpec`` fits)."""

    kind: str
    shape: tuple[int, ...]


@dataclass
class ModelConfig:
    """Sizes of a :class:`FusionNet`; the defaults suit the small datasets of this study."""

    feature_dim: int = 64  # output width of every encoder
    hidden: int = 128  # hidden width inside the encoders
    fusion_hidden: int = 128  # width of the fused head's two FC layers
    dropout: float = 0.0  # dropout on the concatenated features (paper Fig. 1 "dropout")
    modality_heads: bool = False  # add one linear head per modality (paper Fig. 2c)
    fusion: str = "late"  # one of FUSIONS

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r}; valid: {', '.join(FUSIONS)}")


class MLPEncoder(nn.Module):
    """Two-layer perceptron for feature vectors; without ``project``, its first layer only.

    Every encoder has ``out_dim``, the width of its output; without ``project`` it stops
    before its last layer (mid fusion's fusion point, see :data:`FUSIONS`).
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, project: bool = True) -> None:
        super().__init__()
        layers = [nn.Linear(in_dim, hidden), nn.ReLU()]
        if project:
            layers += [nn.Linear(hidden, out_dim), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim if project else hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ImageEncoder(nn.Module):
    """Small CNN for single-channel images (two conv + pool stages, then a linear layer).

    The convolution weights are channels-last, so the convolutions (and the max pooling after
    them) compute channels-last: the same function, about 1.3x faster in training and 2.5x in
    evaluation on a CPU core (oneDNN's kernels; NCHW max pooling is slow), measured on
    avdigits with one thread. Inputs stay as given (``vmap`` cannot convert them).
    """

    def __init__(
        self, shape: tuple[int, ...], hidden: int, out_dim: int, project: bool = True
    ) -> None:
        super().__init__()
        channels, height, width = shape
        width1 = max(hidden // 8, 8)
        width2 = max(hidden // 4, 16)
        self.conv = nn.Sequential(
            nn.Conv2d(channels, width1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width1, width2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ).to(memory_format=torch.channels_last)
        flat = width2 * (height // 4) * (width // 4)
        last = [nn.Linear(flat, out_dim), nn.ReLU()] if project else []
        self.proj = nn.Sequential(nn.Flatten(), *last)
        self.out_dim = out_dim if project else flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x))


class SequenceEncoder(nn.Module):
    """1D CNN over time for (T, C) sequences: two strided convs, then mean pooling over time.

    The strides keep it cheap on a laptop CPU; the receptive field still spans 17 steps.
    """

    def __init__(
        self, shape: tuple[int, ...], hidden: int, out_dim: int, project: bool = True
    ) -> None:
        super().__init__()
        _, channels = shape
        width1 = max(hidden // 4, 8)
        width2 = max(hidden // 2, 16)
        self.conv = nn.Sequential(
            nn.Conv1d(channels, width1, 5, padding=2, stride=2),
            nn.ReLU(),
            nn.Conv1d(width1, width2, 5, padding=2, stride=2),
            nn.ReLU(),
        )
        self.proj = (
            nn.Sequential(nn.Linear(width2, out_dim), nn.ReLU()) if project else nn.Identity()
        )
        self.out_dim = out_dim if project else width2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x.transpose(1, 2))  # (N, T, C) -> (N, C, T) for Conv1d
        return self.proj(features.mean(dim=2))


def make_encoder(spec: InputSpec, config: ModelConfig) -> nn.Module:
    """The encoder suited to a modality's kind: ``vector``, ``image`` or ``sequence``; with
    mid fusion, without its last layer."""
    shape = tuple(spec.shape)
    project = config.fusion != "mid"
    if spec.kind == "vector":
        return MLPEncoder(shape[0], config.hidden, config.feature_dim, project)
    if spec.kind == "image":
        return ImageEncoder(shape, config.hidden, config.feature_dim, project)
    if spec.kind == "sequence":
        return SequenceEncoder(shape, config.hidden, config.feature_dim, project)
    raise ValueError(f"unknown modality kind {spec.kind!r}; valid: 'vector', 'image', 'sequence'")


class SEGate(nn.Module):
    """Squeeze-and-excitation gating across modalities: each modality's features are scaled,
    channel by channel, by a sigmoid gate computed from the *other* modalities' features
    (f_m * sigmoid(W_m [f_j, j != m])); with one modality it is the identity."""

    def __init__(self, modalities: tuple[str, ...], dim: int) -> None:
        super().__init__()
        others = len(modalities) - 1
        self.gates = nn.ModuleDict(
            {m: nn.Linear(dim * others, dim) for m in modalities} if others else {}
        )

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.gates:
            return features
        out = {}
        for m, f in features.items():
            context = torch.cat([features[j] for j in features if j != m], dim=1)
            out[m] = f * torch.sigmoid(self.gates[m](context))
        return out


class NLGate(nn.Module):
    """Non-local (attention) gating across modalities: one token per modality; each token
    attends to every modality's token (scaled dot-product attention) and adds the result to
    its features (a residual, so an all-zero value projection is late fusion)."""

    def __init__(self, modalities: tuple[str, ...], dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.scale = dim**-0.5

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = list(features)
        tokens = torch.stack([features[m] for m in names], dim=1)  # (N, k, dim)
        attention = torch.softmax(
            self.query(tokens) @ self.key(tokens).transpose(1, 2) * self.scale, dim=-1
        )
        mixed = tokens + attention @ self.value(tokens)
        return {m: mixed[:, i] for i, m in enumerate(names)}


class LowRankFusion(nn.Module):
    """Low-rank multimodal fusion (LMF; Liu et al., ACL 2018, the paper's [35]): the tensor
    product of the modalities' features, each with a 1 appended, mapped to ``out_dim`` units
    by a weight tensor of rank ``rank``, computed without forming the product:
    h = sum_i lambda_i * prod_m (W_m^(i) [f_m; 1]) + b, the product element by element."""

    def __init__(self, modalities: tuple[str, ...], dim: int, out_dim: int, rank: int) -> None:
        super().__init__()
        self.modalities = modalities
        # Each factor starts as 1 on the appended 1 and small on the features, so that the
        # product starts near 1 + the sum of the modalities' linear maps (late fusion's scale)
        # and learns its interactions; Xavier-scaled factors alone multiply k features of
        # ~0.1 into ~0.1^k: no gradient, and the fused head stays at chance
        self.factors = nn.ParameterDict(
            {m: nn.Parameter(self._factor(rank, dim, out_dim)) for m in modalities}
        )
        self.rank_weights = nn.Parameter(torch.full((1, rank), 1.0 / rank))
        self.bias = nn.Parameter(torch.zeros(out_dim))

    @staticmethod
    def _factor(rank: int, dim: int, out_dim: int) -> torch.Tensor:
        factor = torch.randn(rank, dim + 1, out_dim) * (dim + 1) ** -0.5
        factor[:, dim] = 1.0  # the row of the appended 1
        return factor

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        product = None
        for m in self.modalities:
            f = features[m]
            with_one = torch.cat([f, torch.ones_like(f[:, :1])], dim=1)
            part = torch.einsum("nd,rdo->rno", with_one, self.factors[m])
            product = part if product is None else product * part
        return torch.einsum("r,rno->no", self.rank_weights[0], product) + self.bias


class FusionNet(nn.Module):
    """Encoders + late-concat fused head (+ optional per-modality linear heads).

    ``forward`` takes a dict ``modality -> batch`` and returns a dict ``head -> logits`` with
    the fused head under :data:`JOINT` and, with ``modality_heads``, one entry per modality.
    With mid fusion the encoders stop before their last layer; their outputs are concatenated
    and go through one shared layer of ``feature_dim`` units (``mid``) into the fused head,
    and each modality head reads its encoder's output (the stream below the fusion point).
    With LMF the encoders' features are fused by :class:`LowRankFusion` into ``feature_dim``
    units instead of concatenated.
    """

    def __init__(
        self, specs: Mapping[str, InputSpec], n_classes: int, config: ModelConfig | None = None
    ) -> None:
        super().__init__()
        if not specs:
            raise ValueError("FusionNet needs at least one modality")
        if JOINT in specs:
            raise ValueError(f"{JOINT!r} is reserved for the fused head; rename the modality")
        self.config = config or ModelConfig()
        self.modalities = tuple(specs)
        self.n_classes = n_classes
        cfg = self.config
        self.encoders = nn.ModuleDict({m: make_encoder(specs[m], cfg) for m in self.modalities})
        widths = {m: self.encoders[m].out_dim for m in self.modalities}
        fused_dim = cfg.feature_dim * len(self.modalities)
        gates = {"se_gate": SEGate, "nl_gate": NLGate}
        # late fusion keeps no module here, so its parameters (and saved weights) stay as they were
        self.gate = (
            gates[cfg.fusion](self.modalities, cfg.feature_dim) if cfg.fusion in gates else None
        )
        self.mid = self.lmf = None
        if cfg.fusion == "mid":
            self.mid = nn.Sequential(nn.Linear(sum(widths.values()), cfg.feature_dim), nn.ReLU())
            fused_dim = cfg.feature_dim
        if cfg.fusion == "lmf":  # one encoder's width out, as mid fusion's shared layer
            self.lmf = LowRankFusion(self.modalities, cfg.feature_dim, cfg.feature_dim, LMF_RANK)
            fused_dim = cfg.feature_dim
        self.fused_head = nn.Sequential(
            nn.Dropout(cfg.dropout),
            nn.Linear(fused_dim, cfg.fusion_hidden),
            nn.ReLU(),
            nn.Linear(cfg.fusion_hidden, cfg.fusion_hidden),
            nn.ReLU(),
            nn.Linear(cfg.fusion_hidden, n_classes),
        )
        self.modality_heads = nn.ModuleDict(
            {m: nn.Linear(widths[m], n_classes) for m in self.modalities}
            if cfg.modality_heads
            else {}
        )

    @property
    def heads(self) -> tuple[str, ...]:
        """Names of the heads ``forward`` returns, per-modality heads first."""
        return (*self.modality_heads.keys(), JOINT)

    def forward(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logits of every head whose inputs are in ``x``.

        Given only some modalities, only their own heads are computed (the fused head needs
        all of them): G-Blend's estimation trains a modality's encoder and head alone.
        """
        present = [m for m in self.modalities if m in x]
        if not present:
            raise ValueError(f"no input for any modality of the model: {self.modalities}")
        features = {m: self.encoders[m](x[m]) for m in present}
        logits = {m: head(features[m]) for m, head in self.modality_heads.items() if m in x}
        if len(present) == len(self.modalities):
            fused = features if self.gate is None else self.gate(features)
            if self.lmf is not None:
                joint = self.lmf(fused)
            else:
                joint = torch.cat([fused[m] for m in present], dim=1)
            logits[JOINT] = self.fused_head(joint if self.mid is None else self.mid(joint))
        return logits


class UncertaintyWeights(nn.Module):
    """Learned loss weights by homoscedastic uncertainty (Kendall, Gal & Cipolla, CVPR 2018;
    the paper's learned-weights baseline): one log-variance s_h per head, initialised at 0,
    and the loss sum_h exp(-s_h) L_h + s_h / 2 (their classification form,
    (1/sigma^2) L + log sigma). Attached to a model as ``loss_weighting``, the trainer combines
    the heads' losses with it and the optimizer trains the s_h with the network."""

    def __init__(self, heads: tuple[str, ...]) -> None:
        super().__init__()
        self.log_vars = nn.ParameterDict({h: nn.Parameter(torch.zeros(())) for h in heads})

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return sum(torch.exp(-self.log_vars[h]) * loss + self.log_vars[h] / 2
                   for h, loss in losses.items())  # fmt: skip

    def weights(self) -> dict[str, float]:
        """The current effective weights exp(-s_h), normalised to sum 1 (as G-Blend's): a
        softmax of -s, which stays defined where every exp(-s_h) under- or overflows (the
        s_h have no bound: a head whose training loss goes to zero drives its s_h down
        without end, and a step can then blow the network up, after which the s_h jump by
        thousands)."""
        s = torch.stack([v.detach() for v in self.log_vars.values()])
        return dict(zip(self.log_vars.keys(), torch.softmax(-s, dim=0).tolist(), strict=True))
