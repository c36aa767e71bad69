"""Small building blocks of VSSM, in both memory layouts.

channel_first=True keeps maps as (B, C, H, W) (the official ``ln2d`` models); False keeps them as
(B, H, W, C) (``ln``). The parameters are the same in both: a Linear's weight is (out, in) and is
applied as a 1x1 convolution in the channel-first layout, like the official ``Linear2d``.
"""
import weakref

import torch
import torch.nn as nn
import torch.nn.functional as F


def inverse_softplus(x):
    """The x with softplus(x) = ``x`` given (> 0): a step size's bias for the scans' softplus."""
    return x + torch.log(-torch.expm1(-x))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def _dispatch_mode_active():
    """Whether a TorchDispatchMode (a FLOP counter, fake tensors) sees the ops being run."""
    stack_length = getattr(torch._C, '_len_torch_dispatch_stack', None)
    return stack_length is None or stack_length() > 0


_ONEDNN_LINEAR = (torch.backends.mkldnn.is_available() and
                  hasattr(torch.ops.mkldnn, '_reorder_linear_weight') and
                  hasattr(torch.ops.mkldnn, '_linear_pointwise'))
_ONEDNN_CONV = (torch.backends.mkldnn.is_available() and
                hasattr(torch._C._nn, 'mkldnn_reorder_conv2d_weight') and
                hasattr(torch.ops.mkldnn, '_convolution_pointwise'))


_onednn_copies = {'enabled': True}


def use_onednn_weight_copies(enabled):
    """Turn the oneDNN weight copies of ``Linear`` and ``Conv2d`` on (the default) or off for the
    whole process: off, CPU inference runs torch's own kernels and saves the copies' memory (as
    much as the weights: about 120 MB for VMamba-T). What they buy depends on the CPU: VMamba-T's
    batch-1 inference took 93 against 107 ms per image with them on a 2-core AVX-512 EPYC, and
    109.2 against 109.3 ms on a 2-core AVX2 one (Zen 3; docs/speed.md). Turning them off drops
    the copies already made."""
    _onednn_copies['enabled'] = bool(enabled)
    if not enabled:
        _ONEDNN_WEIGHTS.clear()


def _onednn_applies(weight, x):
    """Whether a layer may run on its oneDNN copy of ``weight``: plain eager float32 CPU
    inference, with nothing (autograd, compile, export, tracing, a dispatch mode) watching,
    and the copies on (``use_onednn_weight_copies``)."""
    return (_onednn_copies['enabled'] and not torch.is_grad_enabled() and
            x.device.type == 'cpu' and
            x.dtype == torch.float32 and weight.dtype == torch.float32 and
            weight.device.type == 'cpu' and not torch.compiler.is_compiling() and
            not torch.jit.is_tracing() and not _dispatch_mode_active())


# layer -> (key, oneDNN weight). Kept outside the layers: an opaque oneDNN tensor has no storage,
# so in a layer's __dict__ it would travel with copy.deepcopy and pickling and break both (an EMA
# made by copying, torch.save(model)); held weakly, it goes with its layer.
_ONEDNN_WEIGHTS = weakref.WeakKeyDictionary()


def _cached_onednn_weight(layer, shape_key, pack):
    """The layer's oneDNN copy of its weight, ``pack()``-ed again when the weight's storage or
    version (an in-place change) or ``shape_key`` differs from the cached copy's."""
    key = (layer.weight.data_ptr(), layer.weight._version, shape_key)
    cached = _ONEDNN_WEIGHTS.get(layer)
    if cached is None or cached[0] != key:
        cached = _ONEDNN_WEIGHTS[layer] = (key, pack())
    return cached[1]


class Linear(nn.Linear):
    """nn.Linear whose CPU inference runs on oneDNN with the weight laid out for it once.

    Without autograd, on float32 CPU tensors, the layer keeps a oneDNN copy of its weight (not in
    the state dict, nor copied or pickled with the layer; rebuilt when the weight changes in
    place or is replaced) and multiplies with it: MKL's sgemm behind nn.Linear lays the weight
    out again on every call, which at VMamba-T's batch-1 sizes cost 107 against 93 ms per image
    on the 2-core CPU (same process, interleaved).
    The copy holds as much memory as the weight. Under autograd, ``torch.compile``, export,
    tracing or a dispatch mode (FLOP counting, fake tensors) it is nn.Linear.
    """

    def forward(self, x):
        if not self.onednn_applies(x):
            return super().forward(x)
        return self.onednn_forward(x)

    def onednn_applies(self, x):
        return _ONEDNN_LINEAR and _onednn_applies(self.weight, x)

    def onednn_forward(self, x, post_op='none', algorithm=''):
        """The product on the oneDNN weight copy, with oneDNN's ``post_op`` ('gelu' with
        algorithm 'none' is the exact, erf GELU) applied to each output tile while in cache."""
        return torch.ops.mkldnn._linear_pointwise(x, self._onednn_weight(x), self.bias, post_op,
                                                   [], algorithm)

    def _onednn_weight(self, x):
        rows = max(x.numel() // max(x.shape[-1], 1), 1)
        return _cached_onednn_weight(
            self, (), lambda: torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), rows))


class Conv2d(nn.Conv2d):
    """nn.Conv2d (stem and downsampling) whose CPU inference keeps a oneDNN copy of its weight.

    As ``Linear``: without autograd, on float32 CPU tensors, the weight is laid out for oneDNN
    once per input shape and weight version instead of on every call (the stage-3 downsample's is
    10 MB). Otherwise it is nn.Conv2d.
    """

    def forward(self, x):
        if not (_ONEDNN_CONV and self.groups == 1 and self.padding_mode == 'zeros' and
                isinstance(self.padding, tuple) and _onednn_applies(self.weight, x)):
            return super().forward(x)
        return torch.ops.mkldnn._convolution_pointwise(
            x, self._onednn_weight(x), self.bias, list(self.padding), list(self.stride),
            list(self.dilation), self.groups, 'none', [], '')

    def _onednn_weight(self, x):
        def pack():
            return torch._C._nn.mkldnn_reorder_conv2d_weight(
                self.weight.detach().contiguous().to_mkldnn(), list(self.padding),
                list(self.stride), list(self.dilation), self.groups, list(x.shape))

        return _cached_onednn_weight(self, tuple(x.shape), pack)


class PointwiseLinear(nn.Linear):
    """nn.Linear on the channel dim of a (B, C, H, W) map (the official ``Linear2d``)."""

    def forward(self, x):
        if x.device.type == 'cuda':
            # cuDNN's 1x1 convolution, as the official Linear2d: it reads and writes a map in
            # either memory format without a copy (the scan core returns channels-last maps),
            # and its float32 precision is the user's torch.backends.cudnn setting (PyTorch's
            # default allows TF32 for convolutions, as the official models ran).
            return F.conv2d(x, self.weight[:, :, None, None], self.bias)
        # A batched matmul over the flattened map: no layout copies, unlike a 1x1 conv on CPU.
        y = torch.matmul(self.weight, x.flatten(2))
        if self.bias is not None:
            y = y + self.bias.unsqueeze(-1)
        return y.unflatten(-1, x.shape[-2:])


class ToChannelsLast(nn.Module):

    def forward(self, x):
        return x.permute(0, 2, 3, 1)


class ToChannelsFirst(nn.Module):

    def forward(self, x):
        return x.permute(0, 3, 1, 2)


def norm_layer(channels, channel_first):
    return LayerNorm2d(channels) if channel_first else nn.LayerNorm(channels)


def linear_layer(in_features, out_features, bias, channel_first):
    cls = PointwiseLinear if channel_first else Linear
    return cls(in_features, out_features, bias=bias)


def channel_dim(channel_first):
    return 1 if channel_first else -1


def layout_after_conv(channel_first):
    """What follows a conv in a Sequential: nothing, or the move to channels-last."""
    return nn.Identity() if channel_first else ToChannelsLast()


def layout_before_conv(channel_first):
    return nn.Identity() if channel_first else ToChannelsFirst()


class DropPath(nn.Module):
    """Stochastic depth per sample."""

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self):
        return f'drop_prob={self.drop_prob}'


class Mlp(nn.Module):

    def __init__(self, channels, hidden, channel_first, drop=0.0):
        super().__init__()
        self.fc1 = linear_layer(channels, hidden, True, channel_first)
        self.act = nn.GELU()
        self.fc2 = linear_layer(hidden, channels, True, channel_first)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x):
        if isinstance(self.fc1, Linear) and self.fc1.onednn_applies(x):
            # CPU inference: the GELU as fc1's oneDNN post-op (one pass less over the hidden map).
            hidden = self.fc1.onednn_forward(x, 'gelu', 'none')
        else:
            hidden = self.act(self.fc1(x))
        return self.drop(self.fc2(self.drop(hidden)))


def patch_embed(version, in_channels, channels, patch_size, channel_first):
    """Official patch embeddings; Sequential indices match the official state-dict keys."""
    if version == 'v1':
        return nn.Sequential(
            Conv2d(in_channels, channels, kernel_size=patch_size, stride=patch_size),
            layout_after_conv(channel_first),
            norm_layer(channels, channel_first),
        )
    if version == 'v2':
        if patch_size != 4:
            raise ValueError(f'patchembed_version v2 is two stride-2 convs: patch_size must be 4, '
                             f'got {patch_size}.')
        half = channels // 2
        # GELU before the move back to channel-first: the official order is the other way round,
        # the same function, but torch's GELU runs ~1.6x slower on a permuted view on the CPU.
        # Neither holds parameters, so the state-dict indices stay the official ones.
        return nn.Sequential(
            Conv2d(in_channels, half, kernel_size=3, stride=2, padding=1),
            layout_after_conv(channel_first),
            norm_layer(half, channel_first),
            nn.GELU(),
            layout_before_conv(channel_first),
            Conv2d(half, channels, kernel_size=3, stride=2, padding=1),
            layout_after_conv(channel_first),
            norm_layer(channels, channel_first),
        )
    raise ValueError(f"Unknown patchembed_version {version!r}; choose 'v1' or 'v2'.")


class PatchMerging(nn.Module):
    """Swin-style 2x downsampling: concatenate each 2x2 neighbourhood, LayerNorm, 4C -> out."""

    def __init__(self, channels, out_channels, channel_first):
        super().__init__()
        self.channel_first = channel_first
        self.norm = nn.LayerNorm(4 * channels)
        self.reduction = nn.Linear(4 * channels, out_channels, bias=False)

    def forward(self, x):
        if self.channel_first:
            x = x.permute(0, 2, 3, 1)
        height, width = x.shape[1:3]
        if height % 2 or width % 2:
            x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        # Order (row, col) = (0,0), (1,0), (0,1), (1,1): the official weight layout.
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]],
                      dim=-1)
        x = self.reduction(self.norm(x))
        return x.permute(0, 3, 1, 2) if self.channel_first else x


def downsample(version, channels, out_channels, channel_first):
    """Official downsampling layers; Sequential indices match the official keys."""
    if version == 'v1':
        return PatchMerging(channels, out_channels, channel_first)
    if version in ('v2', 'v3'):
        conv = (Conv2d(channels, out_channels, kernel_size=2, stride=2) if version == 'v2' else
                Conv2d(channels, out_channels, kernel_size=3, stride=2, padding=1))
        return nn.Sequential(
            layout_before_conv(channel_first),
            conv,
            layout_after_conv(channel_first),
            norm_layer(out_channels, channel_first),
        )
    raise ValueError(f"Unknown downsample_version {version!r}; choose 'v1', 'v2' or 'v3'.")
