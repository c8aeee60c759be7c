"""`mat_varlen`: attention over packed rows where each trajectory sees only itself.

Registered with transformers' `AttentionInterface` (and `flash_attention_mask` with `AttentionMaskInterface`, so
transformers builds no 4D mask). Segment boundaries come with the row (`cu_seq_lens_q` and `max_length_q`, which
`train.packing.pack` computes on the CPU once per forward and transformers hands to every layer), so no layer
reads anything back from the GPU; without them they are derived from the text position ids (a new trajectory
restarts at 0), which on CUDA costs a device sync per layer.
On CUDA (bf16/fp16) it calls PyTorch's FlashAttention varlen kernel, `torch.nn.attention.varlen.varlen_attn`;
elsewhere a reference path runs causal sdpa per segment, which is what the CPU tests compare against.

Packed rows must run with `use_cache=False`: with a cache present transformers skips packed-sequence handling.
"""

from __future__ import annotations

NAME = "mat_varlen"


def register() -> str:
    """Register `mat_varlen` (idempotent) and return its name, for `attn_implementation=`."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import flash_attention_mask

    AttentionInterface.register(NAME, varlen_attention_forward)
    AttentionMaskInterface.register(NAME, flash_attention_mask)
    return NAME


def segment_starts(position_ids):
    """cu_seqlens (int32) over the flattened (batch, length) tokens: a segment starts where positions restart."""
    import torch

    batch, length = position_ids.shape
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    offsets = torch.nonzero(starts.flatten(), as_tuple=True)[0]
    total = torch.tensor([batch * length], device=offsets.device)
    return torch.cat([offsets, total]).to(torch.int32)


def varlen_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                             scaling: float | None = None, position_ids=None, cu_seq_lens_q=None,
                             max_length_q: int | None = None, **kwargs):
    """query (B, H, L, D), key/value (B, Hkv, L, D) -> ((B, L, H, D), None), as transformers expects."""
    import torch

    if attention_mask is not None:
        raise ValueError("mat_varlen attention takes packed rows without an attention mask")
    batch, heads, length, dim = query.shape
    if cu_seq_lens_q is not None and batch == 1 and int(cu_seq_lens_q.shape[0]) > 1:
        cu_seqlens, longest = cu_seq_lens_q, max_length_q
    else:
        if position_ids is None:
            position_ids = torch.arange(length, device=query.device).expand(batch, length)
        cu_seqlens, longest = segment_starts(position_ids.reshape(batch, length)), None
    q, k, v = (t.transpose(1, 2).reshape(batch * length, t.shape[1], dim) for t in (query, key, value))
    if query.is_cuda and query.dtype in (torch.float16, torch.bfloat16):  # the flash kernel's dtypes
        out = _cuda_varlen(q, k, v, cu_seqlens.to(query.device), longest, scaling)
    else:
        out = _reference(q, k, v, cu_seqlens, scaling)
    return out.reshape(batch, length, heads, dim), None


def _cuda_varlen(q, k, v, cu_seqlens, longest: int | None, scaling):
    from torch.nn.attention.varlen import varlen_attn

    if longest is None:  # derived on the device: one sync
        longest = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    return varlen_attn(q, k, v, cu_seqlens, cu_seqlens, longest, longest, scale=scaling, window_size=(-1, 0),
                       enable_gqa=k.shape[1] != q.shape[1])


def _reference(q, k, v, cu_seqlens, scaling):
    """Causal sdpa on each segment alone: (T, H, D) in and out."""
    import torch
    import torch.nn.functional as F

    groups = q.shape[1] // k.shape[1]
    bounds = cu_seqlens.tolist()
    pieces = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        qs, ks, vs = (t[start:end].transpose(0, 1)[None] for t in (q, k, v))  # 4-D: sdpa's fused CPU kernel
        if groups > 1:
            ks, vs = ks.repeat_interleave(groups, 1), vs.repeat_interleave(groups, 1)
        pieces.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scaling)[0].transpose(0, 1))
    return torch.cat(pieces)
