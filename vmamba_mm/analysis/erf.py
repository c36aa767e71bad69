"""Effective receptive field by the method of RepLKNet (Ding et al., CVPR 2022), which VMamba's
own analysis scripts use.

For each input image the scalar ``target`` is the centre pixel of the last feature map summed
over channels; the ERF is the gradient of that scalar with respect to the (normalised) input,
summed over colour channels and averaged over images. RepLKNet (and VMamba) rectify twice:
``relu`` of the centre response before summing and ``relu`` of the gradient (``mode='relu'``,
the default). ``mode='abs'`` takes the plain sum and the gradient's absolute value instead, so
that negative contributions count too.

For display and comparison the map is ``log10(map + 1)`` rescaled to a maximum of 1 (the raw
scores span orders of magnitude), and the *high-contribution area ratio* is the area of the
smallest centred square holding more than a given share of that rescaled map, over the input
area.

torch only: nothing here needs the mm packages.
"""
import torch
import torch.nn.functional as F

GRADIENT_MODES = ('relu', 'abs')
# RepLKNet reports 20, 30, 50 and 99 %; 90 % sits between the last two.
DEFAULT_THRESHOLDS = (0.2, 0.3, 0.5, 0.9, 0.99)


def input_gradient_map(feature_fn, inputs, mode='relu'):
    """Sum over the batch of each image's ERF map: (H, W) float64.

    feature_fn: maps a (B, 3, H, W) batch to the last feature map (B, C, h, w); images must not
    interact in it (a model in eval mode), so one backward pass serves the whole batch.
    """
    if mode not in GRADIENT_MODES:
        raise ValueError(f'ERF gradient mode {mode!r}: choose one of {GRADIENT_MODES}.')
    inputs = inputs.detach().clone().requires_grad_(True)
    features = feature_fn(inputs)
    if features.dim() != 4:
        raise ValueError(f'the ERF needs a (B, C, h, w) feature map; got shape '
                         f'{tuple(features.shape)}.')
    height, width = features.shape[-2:]
    centre = features[:, :, height // 2, width // 2]
    target = (F.relu(centre) if mode == 'relu' else centre).sum()
    (grad, ) = torch.autograd.grad(target, inputs)
    grad = F.relu(grad) if mode == 'relu' else grad.abs()
    return grad.double().sum(dim=(0, 1))


def effective_receptive_field(feature_fn, batches, mode='relu'):
    """The ERF map averaged over every image of ``batches`` (an iterable of (B, 3, H, W))."""
    total, count = None, 0
    for batch in batches:
        contribution = input_gradient_map(feature_fn, batch, mode)
        total = contribution if total is None else total + contribution
        count += batch.shape[0]
    if count == 0:
        raise ValueError('effective_receptive_field: no images given.')
    return total / count


def log_normalised(erf_map):
    """``log10(map + 1)`` scaled to a maximum of 1, as RepLKNet draws and measures the ERF."""
    scaled = torch.log10(erf_map.double() + 1)
    peak = scaled.max()
    if peak <= 0:
        raise ValueError('the ERF map is zero everywhere: the centre output does not depend on '
                         'the input (with mode relu: no channel of the centre is positive).')
    return scaled / peak


def high_contribution_area_ratio(erf_map, threshold):
    """Area share of the smallest centred square whose sum exceeds ``threshold`` of the total.

    The square of half-width ``r`` around (H // 2, W // 2) is cut at the borders; its area is
    counted as cut. Returns (side, ratio): the side 2r + 1 and the square's area over H * W.
    """
    if not 0 < threshold < 1:
        raise ValueError(f'area ratio threshold {threshold} must lie strictly between 0 and 1.')
    erf_map = erf_map.double()
    height, width = erf_map.shape
    total = erf_map.sum()
    cy, cx = height // 2, width // 2
    for radius in range(max(height, width)):
        window = erf_map[max(cy - radius, 0):cy + radius + 1, max(cx - radius, 0):cx + radius + 1]
        if window.sum() > threshold * total:
            return 2 * radius + 1, window.numel() / (height * width)
    return max(height, width), 1.0
