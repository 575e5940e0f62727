"""U-Net for semantic segmentation (Ronneberger et al. 2015), sized by width and depth.

Each level: two 3x3 convolutions with BatchNorm and ReLU; max-pooling down, transposed
convolution up, skip connections by concatenation. ``width`` is the channel count of the first
level and doubles at each level down; ``depth`` is the number of pooling steps.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    def __init__(self, classes: int, width: int = 16, depth: int = 3, channels: int = 3) -> None:
        super().__init__()
        widths = [width * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList()
        previous = channels
        for level_width in widths:
            self.down.append(_block(previous, level_width))
            previous = level_width
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for level_width in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(level_width * 2, level_width, 2, stride=2))
            self.merge.append(_block(level_width * 2, level_width))
        self.head = nn.Conv2d(widths[0], classes, 1)
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level < self.depth:
                skips.append(x)
                x = self.pool(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)
