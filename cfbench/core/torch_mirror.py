"""A ``Network`` (``cfbench.core.model``) as a differentiable ``torch.nn.Module``.

Imported only by ``ModelView.torch_module``: torch is optional (the nice/llm extras).  The
network arrives as an argument (weights, biases, activation), so this module imports nothing
of cfbench and ``core.model`` may load it on demand without an import cycle.
"""

from __future__ import annotations

from typing import Any

import torch

_ACT = {"identity": lambda a: a, "logistic": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


class NetworkModule(torch.nn.Module):
    """Encoded rows ``(n, d)`` -> class probabilities ``(n, 2)``, the same arithmetic as
    scikit-learn's forward pass (float64 parameters; inputs are cast to them)."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList()
        for W, b in zip(net.weights, net.biases, strict=True):
            layer = torch.nn.Linear(W.shape[0], W.shape[1], dtype=torch.float64)
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(W.T.copy()))
                layer.bias.copy_(torch.from_numpy(b.copy()))
            self.layers.append(layer)
        self.activation = net.activation

    def logit(self, z: torch.Tensor) -> torch.Tensor:
        """The class-1 logit ``(n,)`` (log p1 − log p0, finite where p0 rounds to 0)."""
        a = z.to(self.layers[0].weight.dtype)
        act = _ACT[self.activation]
        for i, layer in enumerate(self.layers):
            a = layer(a)
            if i < len(self.layers) - 1:
                a = act(a)
        return a[:, 0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        p1 = torch.sigmoid(self.logit(z))
        return torch.stack([1 - p1, p1], dim=1)


def build_module(net: Any) -> NetworkModule:
    """The module in evaluation mode with gradients on its input only (parameters frozen)."""
    module = NetworkModule(net).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
