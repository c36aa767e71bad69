"""U-Mamba2 for mmseg: nnU-Net's residual-encoder U-Net with one Mamba2 layer on the bottleneck.

``UMamba2`` (backbone): a stem convolution, then stages of residual blocks, each stage after the
first starting with a stride-2 block; the deepest stage's map (the bottleneck) goes through
``Mamba2Layer``, which replaces it, and, with ``clicks`` set, through ``ClickPrompt`` (U-Mamba2's
place; ``clicks['stages']`` can name more stages, each then with a prompt of its own).
``clicks['input_maps']`` adds the dense encoding: ``ClickMaps``' per-class maps stacked onto the
image before the stem. It returns every stage's map (strides 1, 2, 4, ...) for the decoder's
skips.

``UMamba2Head`` (decode head): from the bottleneck up, a stride-2 transposed convolution, the
skip of that resolution concatenated, convolution blocks; the classifier on the full-resolution
map. With ``deep_supervision`` the decoder stages between the coarsest and the finest also
predict, and the loss is nnU-Net's weighted sum (weights 1, 1/2, 1/4, ... from the finest, the
coarsest decoder stage's 0, normalised to sum to one);
the side predictions are upsampled to the labels (nnU-Net downsamples the labels instead).
"""
import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from torch import nn

from .clicks import ClickMaps, ClickPrompt, pad_clicks
from .mamba2_layer import Mamba2Layer

NNUNET_NORM = dict(type='IN', affine=True)
NNUNET_ACT = dict(type='LeakyReLU', negative_slope=0.01, inplace=True)
# U-Mamba2's bottleneck layer; headdim 80 divides the 2 * 320 inner channels of nnU-Net's 2D
# bottleneck into 8 heads.
UMAMBA2_LAYER = dict(d_state=32, d_conv=4, expand=2, headdim=80, chunk_size=256)


class ResidualBlock(nn.Module):
    """conv3x3 (stride) - norm - act - conv3x3 - norm, plus a projected shortcut, then act."""

    def __init__(self, in_channels, out_channels, stride, norm_cfg, act_cfg):
        super().__init__()
        self.conv1 = ConvModule(in_channels, out_channels, 3, stride=stride, padding=1,
                                norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv2 = ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg,
                                act_cfg=None)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            # nnU-Net's BasicBlockD: average-pool, then a 1x1 projection; an odd side rounds up,
            # as the strided convolution's does
            self.shortcut = nn.Sequential(
                nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
                if stride != 1 else nn.Identity(),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                build_norm_layer(norm_cfg, out_channels)[1])
        self.act = build_activation_layer(act_cfg)

    def forward(self, x):
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.act(self.conv2(self.conv1(x)) + shortcut)


def _match_size(x, size):
    """Crop or zero-pad x's last two dimensions to ``size`` (a transposed convolution doubles an
    odd size the stride-2 encoder had rounded up)."""
    x = x[..., :size[0], :size[1]]
    pad_h, pad_w = size[0] - x.shape[-2], size[1] - x.shape[-1]
    return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x


class UMamba2(BaseModule):
    """The encoder; see the module docstring.

    Args:
        in_channels: image channels.
        stage_channels: channels of each stage, finest first (a stride-2 step between stages).
        blocks_per_stage: residual blocks in each stage.
        norm_cfg, act_cfg: mmcv norm and activation (nnU-Net's InstanceNorm and LeakyReLU).
        mamba: ``Mamba2Layer`` settings for the bottleneck (d_state, d_conv, expand, headdim,
            groups, chunk_size, backend), or None for a plain residual-encoder U-Net.
        clicks: ``ClickPrompt`` settings (``num_classes``, ``num_heads``, ``initial_reach``) to
            take click prompts, plus ``stages``: the stages whose maps they prompt (default
            (-1,), the bottleneck only, as U-Mamba2; () for none) and ``input_maps``: None (the
            default) or ``ClickMaps`` settings (``dict(radius=5.0)``) to give the stem the
            clicks as input channels too; None (the default) for no clicks.
    """

    def __init__(self, in_channels=3, stage_channels=(32, 64, 128, 256, 320),
                 blocks_per_stage=(1, 3, 4, 6, 6), norm_cfg=NNUNET_NORM, act_cfg=NNUNET_ACT,
                 mamba=UMAMBA2_LAYER, clicks=None, init_cfg=None):
        super().__init__(init_cfg)
        if len(blocks_per_stage) != len(stage_channels):
            raise ValueError(f'UMamba2: blocks_per_stage={tuple(blocks_per_stage)} needs one entry '
                             f'per stage of stage_channels={tuple(stage_channels)}.')
        self.stage_channels = tuple(stage_channels)
        clicks = None if clicks is None else dict(clicks)
        input_maps = None if clicks is None else clicks.pop('input_maps', None)
        self.click_maps = None if input_maps is None else ClickMaps(clicks['num_classes'],
                                                                     **input_maps)
        stem_inputs = in_channels + (0 if self.click_maps is None else clicks['num_classes'])
        self.stem = ConvModule(stem_inputs, stage_channels[0], 3, padding=1, norm_cfg=norm_cfg,
                               act_cfg=act_cfg)
        self.stages = nn.ModuleList()
        previous = stage_channels[0]
        for index, (channels, blocks) in enumerate(zip(stage_channels, blocks_per_stage)):
            stride = 1 if index == 0 else 2
            self.stages.append(nn.Sequential(*[
                ResidualBlock(previous if b == 0 else channels, channels, stride if b == 0 else 1,
                              norm_cfg, act_cfg) for b in range(blocks)]))
            previous = channels
        self.mamba = None if mamba is None else Mamba2Layer(stage_channels[-1], **mamba)
        self.click_prompts = nn.ModuleDict()
        if clicks is not None:
            for stage in clicks.pop('stages', (-1, )):
                if not -len(stage_channels) <= stage < len(stage_channels):
                    raise ValueError(f'UMamba2: clicks stage {stage} is not one of the '
                                     f'{len(stage_channels)} stages (0..'
                                     f'{len(stage_channels) - 1}, or -1 for the bottleneck).')
                index = stage % len(stage_channels)
                self.click_prompts[str(index)] = ClickPrompt(stage_channels[index], **clicks)

    @property
    def takes_clicks(self):
        return len(self.click_prompts) > 0 or self.click_maps is not None

    def forward(self, inputs, clicks=None, valid=None):
        """inputs (batch, in_channels, H, W) -> one map per stage. With a click prompt, clicks
        (batch, K, 3) and valid (batch, K) as ``pad_clicks`` gives them, or None for none."""
        if self.takes_clicks and clicks is None:
            clicks, valid = pad_clicks([None] * inputs.shape[0], inputs.device)
        if self.click_maps is not None:
            maps = self.click_maps(clicks, valid, inputs.shape[-2:]).to(inputs.dtype)
            inputs = torch.cat([inputs, maps], dim=1)
        x = self.stem(inputs)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        if self.mamba is not None:
            outputs[-1] = self.mamba(outputs[-1])
        for index, prompt in self.click_prompts.items():
            index = int(index)
            outputs[index] = prompt(outputs[index], clicks, valid, inputs.shape[-2:])
        return tuple(outputs)


class UMamba2Head(BaseDecodeHead):
    """The U-Net decoder; see the module docstring. ``in_channels`` are the encoder's stage
    channels (finest first); ``blocks_per_stage`` convolution blocks follow each upsampling."""

    def __init__(self, in_channels, blocks_per_stage=1, deep_supervision=False,
                 norm_cfg=NNUNET_NORM, act_cfg=NNUNET_ACT, dropout_ratio=0.0, **kwargs):
        in_channels = list(in_channels)
        kwargs.setdefault('channels', in_channels[0])
        super().__init__(in_channels, in_index=list(range(len(in_channels))),
                         input_transform='multiple_select', norm_cfg=norm_cfg, act_cfg=act_cfg,
                         dropout_ratio=dropout_ratio, **kwargs)
        self.deep_supervision = deep_supervision
        self.upsample = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for coarse, fine in zip(in_channels[:0:-1], in_channels[-2::-1]):
            self.upsample.append(nn.ConvTranspose2d(coarse, fine, 2, stride=2))
            self.blocks.append(nn.Sequential(*[
                ConvModule(2 * fine if b == 0 else fine, fine, 3, padding=1, norm_cfg=norm_cfg,
                           act_cfg=act_cfg) for b in range(blocks_per_stage)]))
        if self.channels != in_channels[0]:
            self.final = ConvModule(in_channels[0], self.channels, 1, norm_cfg=norm_cfg,
                                    act_cfg=act_cfg)
        else:
            self.final = nn.Identity()
        # predictions of the decoder stages between the coarsest and the finest, coarse first
        # (nnU-Net weighs the coarsest decoder stage's prediction 0)
        self.side_seg = nn.ModuleList(
            nn.Conv2d(fine, self.out_channels, 1) for fine in in_channels[-3:0:-1]
        ) if deep_supervision else None

    def decode(self, inputs):
        """The decoder's maps, coarse to fine (the last at full resolution)."""
        maps = self._transform_inputs(inputs)
        x = maps[-1]
        decoded = []
        for upsample, block, skip in zip(self.upsample, self.blocks, maps[-2::-1]):
            x = _match_size(upsample(x), skip.shape[-2:])
            x = block(torch.cat([skip, x], dim=1))
            decoded.append(x)
        return decoded

    def forward(self, inputs):
        return self.cls_seg(self.final(self.decode(inputs)[-1]))

    def loss(self, inputs, batch_data_samples, train_cfg):
        decoded = self.decode(inputs)
        losses = self.loss_by_feat(self.cls_seg(self.final(decoded[-1])), batch_data_samples)
        if not self.deep_supervision:
            return losses
        side_logits = [seg(x) for seg, x in zip(self.side_seg, decoded[1:-1])]
        weights = [0.5 ** depth for depth in range(len(side_logits) + 1)]
        total = sum(weights)
        for name in [k for k in losses if k.startswith('loss')]:
            losses[name] = losses[name] * (weights[0] / total)
        for weight, logits in zip(weights[1:], reversed(side_logits)):
            for name, value in self.loss_by_feat(logits, batch_data_samples).items():
                if name.startswith('loss'):
                    losses[name] = losses[name] + value * (weight / total)
        return losses
