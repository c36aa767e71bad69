"""Sequential selective scan: one token at a time, written for obviousness. The test oracle."""
import torch

from ..common.scan_common import add_skip, prepare_delta


def selective_scan_reference(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                             out_dtype=torch.float32):
    batch, dim, length = u.shape
    groups = B.shape[1]
    delta = prepare_delta(delta, delta_bias, delta_softplus)
    u32, A = u.float(), A.float()
    # Expand the groups to one B/C row per channel: (batch, dim, N, L).
    B = B.float().repeat_interleave(dim // groups, dim=1)
    C = C.float().repeat_interleave(dim // groups, dim=1)
    h = u32.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(length):
        decay = torch.exp(delta[:, :, t, None] * A)
        h = decay * h + (delta[:, :, t] * u32[:, :, t])[..., None] * B[..., t]
        ys.append((h * C[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u32.new_zeros(batch, dim, 0)
    return add_skip(y, u, D, out_dtype)
