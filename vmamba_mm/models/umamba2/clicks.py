"""Click prompts for interactive segmentation (SAM's recipe, one way): clicks become tokens, and
the bottleneck map's tokens attend to them.

A click is a row (x, y, label) in the input image's pixel coordinates (x: column, y: row); label
is the class the user says that pixel belongs to (in a binary task, label 0 is a negative click).
Click tokens are random Fourier features of the normalised position (SAM's
``PositionEmbeddingRandom``) plus a learned embedding of the label. Every bottleneck token, with
the same Fourier features of its own position added, queries the click tokens and a learned
"no click" token (so a sample without clicks still has something to attend to). A click acts
near itself first: each head adds -d² / (2 reach²) to the score of a click at distance d (image
sides = 1), with a learned reach per head (0.1 at first), so a token attends to the clicks
around it from the first step instead of having to learn the position match from the Fourier
features alone (without it, the demo's model, then trained with AdamW, learnt no use of its
clicks in 1,500 iterations).
The attention's output is added to the map through a zero-initialised projection, so the
branch starts as the identity.

``ClickMaps`` is the other encoding, interactive nnU-Net's and RITM's: one map per class, 1 at
each click of that class and falling off as a Gaussian of its distance, stacked onto the image
as input channels. The first convolution sees the clicks where they are, at full resolution.
"""
import math

import torch
from torch import nn


class FourierPositions(nn.Module):
    """(..., 2) positions in [0, 1] -> (..., channels) sin/cos features of random frequencies."""

    def __init__(self, channels, scale=1.0):
        super().__init__()
        if channels % 2:
            raise ValueError(f'FourierPositions: channels={channels} must be even (sin and cos '
                             f'halves).')
        self.register_buffer('frequencies', scale * torch.randn(2, channels // 2))

    def forward(self, positions):
        angles = 2 * math.pi * (2 * positions - 1) @ self.frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


def pad_clicks(click_lists, device):
    """Per-sample (K_i, 3) click arrays or tensors (or None) -> (clicks (batch, K, 3) float32,
    valid (batch, K) bool), K the largest K_i."""
    rows = [torch.as_tensor(c if c is not None else torch.zeros(0, 3),
                            dtype=torch.float32).reshape(-1, 3) for c in click_lists]
    most = max((len(r) for r in rows), default=0)
    clicks = torch.zeros(len(rows), most, 3, device=device)
    valid = torch.zeros(len(rows), most, dtype=torch.bool, device=device)
    for index, r in enumerate(rows):
        clicks[index, :len(r)] = r.to(device)
        valid[index, :len(r)] = True
    return clicks, valid


def click_labels(clicks, num_classes, owner):
    """The clicks' labels as integers, checked to be classes 0 .. num_classes - 1."""
    labels = clicks[..., 2].long()
    # a data-dependent check: not on shapes-only (meta) tensors, which have no values
    bad = (labels[(labels < 0) | (labels >= num_classes)]
           if labels.numel() and not labels.is_meta else labels[:0])
    if bad.numel():
        raise ValueError(f'{owner}: click label {int(bad[0])} is not a class of '
                         f'0..{num_classes - 1}; check the clicks of the data samples.')
    return labels


class ClickPrompt(nn.Module):
    """Cross-attention from a map's tokens to click tokens, added to the map.

    Args:
        channels: channels of the map (and of the click tokens).
        num_classes: click labels are 0 .. num_classes - 1.
        num_heads: attention heads; must divide the channels.
        initial_reach: each head's reach at initialisation, in image sides.
    """

    def __init__(self, channels, num_classes, num_heads=4, initial_reach=0.1):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f'ClickPrompt: channels={channels} do not divide into '
                             f'num_heads={num_heads}; use a number of heads that divides them.')
        self.num_classes = num_classes
        self.positions = FourierPositions(channels)
        self.label_embedding = nn.Embedding(num_classes, channels)
        self.no_click = nn.Parameter(torch.zeros(1, 1, channels))
        self.query_norm = nn.LayerNorm(channels)
        self.num_heads = num_heads
        self.log_reach = nn.Parameter(torch.full((num_heads, ), math.log(initial_reach)))
        self.attention = nn.MultiheadAttention(channels, num_heads, batch_first=True)
        self.out_proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def click_positions(self, clicks, image_size):
        """(batch, K, 3) clicks -> (batch, K, 2) positions (x, y) in [0, 1] of the image."""
        height, width = image_size
        return (clicks[..., :2] + 0.5) / clicks.new_tensor([width, height])

    def click_tokens(self, clicks, image_size):
        """(batch, K, 3) clicks -> (batch, K, channels) tokens."""
        labels = click_labels(clicks, self.num_classes, 'ClickPrompt')
        return self.positions(self.click_positions(clicks, image_size)) + \
            self.label_embedding(labels)

    def locality_bias(self, grid, clicks, valid, image_size):
        """(batch * heads, h w, 1 + K) scores to add: 0 for the "no click" token, -d^2 / (2
        reach^2) for a click at distance d, -inf for a padding slot."""
        batch = clicks.shape[0]
        offsets = grid[None, :, None, :] - self.click_positions(clicks, image_size)[:, None]
        squared = offsets.pow(2).sum(-1)  # (batch, h w, K)
        reach = self.log_reach.exp().view(1, -1, 1, 1)
        bias = -squared[:, None] / (2 * reach ** 2)  # (batch, heads, h w, K)
        bias = bias.masked_fill(~valid[:, None, None, :], float('-inf'))
        bias = torch.cat([bias.new_zeros(bias.shape[:3] + (1, )), bias], dim=-1)
        return bias.reshape(batch * self.num_heads, grid.shape[0], -1)

    def forward(self, feature_map, clicks, valid, image_size):
        """feature_map (batch, channels, h, w); clicks (batch, K, 3) and valid (batch, K) from
        ``pad_clicks``; image_size (height, width) of the input the clicks refer to."""
        batch, channels, height, width = feature_map.shape
        rows = (torch.arange(height, device=feature_map.device) + 0.5) / height
        cols = (torch.arange(width, device=feature_map.device) + 0.5) / width
        grid = torch.stack(torch.meshgrid(cols, rows, indexing='xy'), dim=-1).reshape(-1, 2)
        tokens = feature_map.flatten(2).transpose(1, 2)
        queries = self.query_norm(tokens) + self.positions(grid).to(tokens.dtype)
        keys = torch.cat([self.no_click.expand(batch, -1, -1),
                          self.click_tokens(clicks, image_size)], dim=1).to(queries.dtype)
        bias = self.locality_bias(grid, clicks, valid, image_size).to(queries.dtype)
        attended, _ = self.attention(queries, keys, keys, attn_mask=bias, need_weights=False)
        update = self.out_proj(attended).transpose(1, 2).reshape(batch, channels, height, width)
        return feature_map + update


class ClickMaps(nn.Module):
    """Clicks -> (batch, num_classes, H, W) maps: channel c is the largest exp(-d^2 / (2 r^2))
    over the clicks of class c, d a pixel's distance from the click in pixels, r ``radius``; 0
    everywhere for a class without clicks. No parameters.

    Args:
        num_classes: click labels are 0 .. num_classes - 1.
        radius: the Gaussian's standard deviation, in input pixels.
    """

    def __init__(self, num_classes, radius=5.0):
        super().__init__()
        if radius <= 0:
            raise ValueError(f'ClickMaps: radius={radius} must be a positive number of pixels.')
        self.num_classes = num_classes
        self.radius = float(radius)

    def forward(self, clicks, valid, image_size):
        """clicks (batch, K, 3) and valid (batch, K) from ``pad_clicks``; image_size (height,
        width) of the input the clicks refer to."""
        height, width = image_size
        device = clicks.device
        rows = torch.arange(height, device=device, dtype=torch.float32)
        cols = torch.arange(width, device=device, dtype=torch.float32)
        dy = rows.view(1, 1, -1, 1) - clicks[..., 1, None, None]  # (batch, K, H, 1)
        dx = cols.view(1, 1, 1, -1) - clicks[..., 0, None, None]  # (batch, K, 1, W)
        bumps = torch.exp(-(dy.pow(2) + dx.pow(2)) / (2 * self.radius ** 2))  # (batch, K, H, W)
        labels = click_labels(clicks, self.num_classes, 'ClickMaps').clamp(min=0)  # padding
        one_hot = nn.functional.one_hot(labels, self.num_classes)
        belongs = one_hot.bool() & valid[..., None]  # (batch, K, classes)
        bumps = bumps[:, :, None] * belongs[..., None, None]  # (batch, K, classes, H, W)
        return bumps.amax(dim=1) if bumps.shape[1] else bumps.new_zeros(
            clicks.shape[0], self.num_classes, height, width)
