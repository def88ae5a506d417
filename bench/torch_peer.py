"""FCN-8s written plainly in PyTorch: the benchmark's peer, never a runtime dependency.

The reference network (voc-fcn8s net.py) as a PyTorch user would write it:
``nn.Conv2d`` with conv1_1's 100-pixel pad, ceil-mode max pooling, fc6 as a
7x7 convolution, dense ``ConvTranspose2d`` upsampling and slicing crops, in the
default NCHW layout. Install with ``pip install "fcn_keras[bench]"`` (torch).

Example:
    >>> import torch
    >>> net = FCN8s(num_classes=21).eval()
    >>> net(torch.zeros(1, 3, 37, 50)).shape
    torch.Size([1, 21, 37, 50])
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


class FCN8s(nn.Module):
    """The reference FCN-8s; layer names match fcn_keras' (``conv1_1`` ... ``upscore8``).

    ``width`` scales every layer's channels (1: the reference; the benchmarks' smoke tests take 1/8, which
    has the same layers, crops and shapes at 1/64 of the arithmetic).
    """

    def __init__(self, num_classes: int = 21, width: float = 1.0):
        super().__init__()
        channels = 3
        for block, (filters, convs) in enumerate(_BLOCKS, start=1):
            for i in range(1, convs + 1):
                pad = 100 if (block, i) == (1, 1) else 1
                setattr(self, f"conv{block}_{i}", nn.Conv2d(channels, round(filters * width), 3, padding=pad))
                channels = round(filters * width)
        fc = round(4096 * width)
        self.fc6 = nn.Conv2d(channels, fc, 7)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        self.score_pool4 = nn.Conv2d(channels, num_classes, 1)
        self.score_pool3 = nn.Conv2d(round(256 * width), num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(num_classes, num_classes, 16, stride=8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        pools = {}
        for block, (_, convs) in enumerate(_BLOCKS, start=1):
            for i in range(1, convs + 1):
                x = torch.relu(getattr(self, f"conv{block}_{i}")(x))
            x = nn.functional.max_pool2d(x, 2, 2, ceil_mode=True)
            pools[block] = x
        # drop6/drop7 as the reference's (and the Keras model's): the identity in eval(), on in train().
        x = nn.functional.dropout(torch.relu(self.fc6(x)), 0.5, self.training)
        x = nn.functional.dropout(torch.relu(self.fc7(x)), 0.5, self.training)
        up = self.upscore2(self.score_fr(x))
        skip = self.score_pool4(pools[4])[:, :, 5 : 5 + up.shape[2], 5 : 5 + up.shape[3]]
        up = self.upscore_pool4(up + skip)
        skip = self.score_pool3(pools[3])[:, :, 9 : 9 + up.shape[2], 9 : 9 + up.shape[3]]
        up = self.upscore8(up + skip)
        return up[:, :, 31 : 31 + height, 31 : 31 + width]


def from_keras(model) -> FCN8s:
    """A :class:`FCN8s` holding the weights of an fcn_keras ``fcn8s`` model (for equivalence checks).

    Keras Conv2D kernels (kh, kw, in, out) and Conv2DTranspose kernels (kh, kw, out, in)
    both become PyTorch's layouts by the transpose (3, 2, 0, 1).
    """
    net = FCN8s(model.get_layer("score_fr").filters)
    with torch.no_grad():
        for name, module in net.named_children():
            weights = [np.asarray(w) for w in model.get_layer(name).get_weights()]
            module.weight.copy_(torch.from_numpy(weights[0].transpose(3, 2, 0, 1).copy()))
            if module.bias is not None:
                module.bias.copy_(torch.from_numpy(weights[1]))
    return net.eval()
