"""Small building blocks shared by the regression estimators: a ReLU MLP builder and a stack
of ``M`` independent MLPs evaluated with batched matrix products (one ``baddbmm`` per layer
for all members), used to train hyper-parameter grids and ensembles jointly on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = [
    "IndexBatches",
    "StackedMLP",
    "mlp",
    "stack_training_sets",
    "train_stacked",
]


def mlp(in_features: int, hidden: Sequence[int], out_features: int, *, dropout: float = 0.0,
        input_dropout: bool = False) -> nn.Sequential:
    """``[Dropout] -> (Linear -> ReLU -> [Dropout]) x len(hidden) -> Linear``.

    Dropout layers (rate ``dropout``) follow every hidden activation and, with
    ``input_dropout``, also precede the first layer (Gal & Ghahramani's UCI networks).
    """
    layers: list[nn.Module] = []
    if input_dropout:
        layers.append(nn.Dropout(dropout))
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout > 0 or input_dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class StackedMLP(nn.Module):
    r"""``M`` independent ReLU MLPs with weights stacked along a leading member axis.

    Layer ``l`` holds ``weight (M, in, out)``, initialised Glorot-uniform
    (:math:`U(\pm\sqrt{6 / (in + out)})`, Keras' default, as in Gal's networks), and
    ``bias (M, 1, out)``, initialised to zero. ``forward(x, masks)``
    takes ``x (M, B, D)`` (or ``(B, D)``, shared by every member) and returns ``(M, B, O)``.

    Dropout: member ``m`` uses rate ``group_rates[mask_groups[m]]``, and members of the same
    group share their dropout masks within a step (common random numbers, e.g. across the
    weight-decay values of a grid search): masks are drawn once per group, which is where
    most of the time of a small dropout network goes on the CPU. By default all members share
    one group of rate 0 (no dropout).
    """

    def __init__(self, num_members: int, in_features: int, hidden: Sequence[int],
                 out_features: int, *, group_rates: Sequence[float] = (0.0,),
                 mask_groups: Sequence[int] | None = None,
                 input_dropout: bool = False) -> None:
        super().__init__()
        widths = [in_features, *hidden, out_features]
        self.num_members = num_members
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            self.weights.append(nn.Parameter(
                torch.empty(num_members, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.zeros(num_members, 1, fan_out)))
        if mask_groups is None:
            mask_groups = [0] * num_members
        if len(mask_groups) != num_members or not 0 <= min(mask_groups) <= max(mask_groups) < len(
                group_rates):
            raise ValueError("StackedMLP needs one mask group in [0, len(group_rates)) per member.")
        self.input_dropout = input_dropout
        self.group_rates = [float(p) for p in group_rates]
        self.register_buffer("group_index", torch.tensor(list(mask_groups), dtype=torch.long))
        self.register_buffer(
            "keep", torch.tensor([1.0 - p for p in self.group_rates]).view(-1, 1, 1))
        self._identity_groups = list(mask_groups) == list(range(num_members))

    @property
    def has_dropout(self) -> bool:
        return any(p > 0 for p in self.group_rates)

    def _dropout(self, h: torch.Tensor) -> torch.Tensor:
        """Inverted dropout on ``h (M, B, W)`` with the masks of each member's rate group."""
        g, b, w = len(self.group_rates), h.shape[1], h.shape[2]
        masks = (torch.rand(g, b, w, dtype=h.dtype) < self.keep).to(h.dtype) / self.keep
        if g == 1 or self._identity_groups:
            return h * masks
        return h * masks[self.group_index]

    def forward(self, x: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        """``x (M, B, D)`` or ``(B, D)`` -> ``(M, B, O)``; dropout is applied when the module
        is in training mode or ``sample=True`` (MC-Dropout)."""
        stochastic = (self.training or sample) and self.has_dropout
        m = self.num_members
        h = x if x.ndim == 3 else x.unsqueeze(0).expand(m, -1, -1)
        if stochastic and self.input_dropout:
            h = self._dropout(h)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)  # (M, B, out)
            if i < last:
                h = torch.relu(h)
                if stochastic:
                    h = self._dropout(h)
        return h

    def squared_weight_norms(self) -> torch.Tensor:
        """``sum_l ||W_l||^2`` per member (biases excluded), ``(M,)``."""
        return sum(w.pow(2).sum(dim=(1, 2)) for w in self.weights)

    def member(self, index: int) -> nn.Sequential:
        """Member ``index`` as a plain :func:`mlp` (a copy of its weights)."""
        rate = self.group_rates[int(self.group_index[index])]
        widths = [self.weights[0].shape[1]] + [w.shape[2] for w in self.weights]
        net = mlp(widths[0], widths[1:-1], widths[-1], dropout=rate,
                  input_dropout=self.input_dropout)
        linears = [mod for mod in net if isinstance(mod, nn.Linear)]
        with torch.no_grad():
            for lin, w, b in zip(linears, self.weights, self.biases, strict=True):
                lin.weight.copy_(w[index].T)
                lin.bias.copy_(b[index, 0])
        return net.eval()


class IndexBatches:
    """Shuffled mini-batches of row indices of an ``n``-row training set, one epoch per
    iteration: ``(B,)`` tensors, or ``(B, M)`` with ``num_members=M`` (column ``m`` follows
    member ``m``'s own permutation). ``generator`` (seeded by ``seed``) is checkpointed by
    :func:`dunno.training.fit` so a resumed run sees the same order."""

    def __init__(self, n: int, batch_size: int, *, seed: int,
                 num_members: int | None = None) -> None:
        self.n = n
        self.batch_size = batch_size
        self.num_members = num_members
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        if self.num_members is None:
            order = torch.randperm(self.n, generator=self.generator)
            for start in range(0, self.n, self.batch_size):
                yield order[start:start + self.batch_size]
            return
        order = torch.stack([torch.randperm(self.n, generator=self.generator)
                             for _ in range(self.num_members)], dim=1)  # (n, M)
        for start in range(0, self.n, self.batch_size):
            yield order[start:start + self.batch_size]


def train_stacked(xs: torch.Tensor, ys: torch.Tensor, split_of: Sequence[int], *,
                  hidden: Sequence[int], out_features: int, loss_fn: Callable,
                  group_rates: Sequence[float] = (0.0,), mask_groups: Sequence[int] | None = None,
                  input_dropout: bool = False, decay: torch.Tensor | None = None,
                  epochs: int, batch_size: int, lr: float, seed: int,
                  on_epoch_end: Callable | None = None):
    """Train a :class:`StackedMLP` whose member ``m`` learns training set ``split_of[m]`` of
    ``xs (S, N, D)``, ``ys (S, N, O)``, all members on the same mini-batch rows.

    ``loss_fn(out (M, B, K), y (M, B, O)) -> (M,)`` is each member's mean loss; ``decay (M,)``
    adds ``decay_m * sum ||W||^2`` (an L2 penalty on weights, not biases, in the loss as
    in Keras). One Adam step per mini-batch updates every member (Adam is elementwise, so
    this is exactly one optimiser per member). Runs :func:`dunno.training.fit` (one progress
    bar over the epochs; ``on_epoch_end`` after each); returns the network (eval mode) and
    its history.
    """
    from dunno.training import fit as fit_loop
    from dunno.training import seed_everything

    n = xs.shape[1]
    seed_everything(seed)
    m = len(split_of)
    net = StackedMLP(m, xs.shape[2], hidden, out_features, group_rates=group_rates,
                     mask_groups=mask_groups, input_dropout=input_dropout)
    split_of = torch.as_tensor(list(split_of), dtype=torch.long)
    same = len(split_of) == xs.shape[0] and bool((split_of == torch.arange(m)).all())
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loader = IndexBatches(n, batch_size, seed=seed)

    def step(index):
        xb, yb = xs[:, index], ys[:, index]  # (S, B, D), (S, B, O)
        if not same:
            xb, yb = xb[split_of], yb[split_of]  # (M, B, D), (M, B, O)
        losses = loss_fn(net(xb), yb)  # (M,)
        loss = losses.sum()
        if decay is not None:
            loss = loss + (decay * net.squared_weight_norms()).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": losses.detach().mean()}

    history = fit_loop(step, loader, epochs=epochs, state={"net": net, "adam": optimizer},
                       progress_by="epochs", desc=type(net).__name__, on_epoch_end=on_epoch_end)
    return net.eval(), history


def stack_training_sets(owner: str, pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack validated ``(x, y)`` pairs of one shape into ``xs (S, N, D)``, ``ys (S, N, O)``."""
    shapes = {(tuple(x.shape), tuple(y.shape)) for x, y in pairs}
    if len(shapes) != 1:
        raise ValueError(
            f"{owner}.fit_many needs training sets of one shape; got {sorted(shapes)}. "
            "Call fit on each instead."
        )
    return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])
