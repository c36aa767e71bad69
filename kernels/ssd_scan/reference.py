"""SSD's recurrence one token at a time, written for obviousness. The test oracle.

Per head h (group g = h // (heads // groups)), in float32: ``S_t = exp(dt_t A_h) S_{t-1} +
dt_t x_t B_t^T`` (S is headdim x N) and ``y_t = S_t C_t + D x_t`` (see the contract in
``__init__``).
"""
import torch
import torch.nn.functional as F


def prepare_dt(dt, dt_bias, dt_softplus):
    """float32 dt' = dt + dt_bias, through softplus when asked (every backend's prologue)."""
    dt = dt.float()
    if dt_bias is not None:
        dt = dt + dt_bias.float()
    return F.softplus(dt) if dt_softplus else dt


def skip_term(x, D):
    """D x in float32 for D of shape (heads,) or (heads, headdim); 0 without D."""
    if D is None:
        return 0
    D = D.float()
    return x.float() * (D[:, None] if D.dim() == 1 else D)


def gradient_placeholders(x, dt, A, B, C, D):
    """Empty (dx, ddt, dA, dB, dC, dD, ddt_bias, dinitial_states) as the compiled backends'
    backward operators return them (their fake implementations): dx, ddt, dB, dC like their
    inputs, the rest float32; dD of D's shape, or (0,) without D."""
    batch, _, heads, headdim = x.shape
    float32 = dict(dtype=torch.float32)
    return (torch.empty_like(x, memory_format=torch.contiguous_format),
            torch.empty_like(dt, memory_format=torch.contiguous_format),
            A.new_empty(heads, **float32),
            torch.empty_like(B, memory_format=torch.contiguous_format),
            torch.empty_like(C, memory_format=torch.contiguous_format),
            x.new_empty(D.shape if D is not None else (0, ), **float32),
            x.new_empty(heads, **float32),
            x.new_empty(batch, heads, headdim, B.shape[-1], **float32))


def ssd_scan_reference(x, dt, A, B, C, chunk_size=64, D=None, dt_bias=None, dt_softplus=False,
                       initial_states=None, return_final_states=False, out_dtype=torch.float32):
    batch, length, heads, headdim = x.shape
    groups, state = B.shape[2], B.shape[3]
    dt = prepare_dt(dt, dt_bias, dt_softplus)
    # B, C per head: head h reads group h // (heads // groups).
    B = B.float().repeat_interleave(heads // groups, dim=2)
    C = C.float().repeat_interleave(heads // groups, dim=2)
    x32 = x.float()
    decay = torch.exp(dt * A.float())  # (batch, L, heads)
    S = (x.new_zeros(batch, heads, headdim, state, dtype=torch.float32)
         if initial_states is None else initial_states.float())
    outputs = []
    for t in range(length):
        drive = (dt[:, t, :, None] * x32[:, t])[..., None] * B[:, t, :, None, :]
        S = decay[:, t, :, None, None] * S + drive
        outputs.append((S * C[:, t, :, None, :]).sum(-1))
    y = torch.stack(outputs, 1) if outputs else x32.new_zeros(x.shape)
    y = (y + skip_term(x32, D)).to(out_dtype)
    return (y, S) if return_final_states else y
