"""Fast operator sequences for the blocks of the networks, and the switch that turns them off.

The blocks (:mod:`ndr_plugin.archs.restormer_blocks`, :mod:`ndr_plugin.archs.ndr_modules`) write their ``forward`` as
the papers draw them and call the helpers here for the steps that have a faster equivalent. Each helper takes the fast
path where it applies and the plain path elsewhere: standard PyTorch operators that work in either memory layout (for
MDTA, the official code's operators). The fast paths are ours; ``benchmarks/arch_speed.py`` measures them (results in
``benchmarks/results/arch_speed.md``):

- channels-last memory on CPU (:func:`preferred_layout`), and layout-keeping versions of the layer norm, the GDFN
  branches, the degradation query and the CP-gate product for channels-last tensors;
- 1x1 convolutions that call oneDNN directly (:func:`pointwise_conv`);
- the MDTA output projection folded into the attention matrix, and the float32 cosine similarity normalised after
  the product (any device).

All of them compute the same function up to float rounding. :func:`plain_operators` turns them off, so that a network
runs channels-first with plain operators only: for exporters such as ONNX (no direct oneDNN calls, no einsum, no
branches on memory strides), and to check the fast paths against the plain ones (``tests/test_archs.py``).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from ndr_plugin.archs.arch_utils import is_channels_last

_fast_paths_enabled = True


@contextmanager
def plain_operators() -> Iterator[None]:
    """Runs the networks with the plain operators inside the ``with`` block: no fast path is taken.

    The switch is module-wide (all networks, all threads) and restored on exit; blocks nest.
    """
    global _fast_paths_enabled
    previous, _fast_paths_enabled = _fast_paths_enabled, False
    try:
        yield
    finally:
        _fast_paths_enabled = previous


def fast_paths_enabled() -> bool:
    """False inside :func:`plain_operators`."""
    return _fast_paths_enabled


def _channels_last_path(x: torch.Tensor) -> bool:
    return _fast_paths_enabled and is_channels_last(x)


def preferred_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory layout the networks run fastest in on its device: channels-last on CPU (oneDNN's
    depthwise and pointwise convolutions and the channel layer norm favour it), unchanged elsewhere and inside
    :func:`plain_operators`."""
    if _fast_paths_enabled and x.device.type == 'cpu':
        return x.contiguous(memory_format=torch.channels_last)
    return x


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """1x1 convolution. For channels-last float32 CPU tensors it calls oneDNN directly, because PyTorch otherwise
    picks its slower generic kernel for single-threaded 1x1 convolutions. Not under autocast, which only casts the
    operators it knows (F.conv2d, not the direct oneDNN call)."""
    if _channels_last_path(x) and x.device.type == 'cpu' and x.dtype == torch.float32 and \
            not torch.is_autocast_enabled('cpu') and \
            torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled:
        return torch.mkldnn_convolution(x, weight, bias, (0, 0), (1, 1), (1, 1), 1)
    return F.conv2d(x, weight, bias)


class PointwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a 1x1 kernel that runs through :func:`pointwise_conv` (same parameters and state_dict).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        bias (bool): Whether to add a bias. Default: True.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pointwise_conv(x, self.weight, self.bias)


def add_to_fresh(fresh: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``fresh + other``, where ``fresh`` is a temporary of the caller's that nothing else reads.

    Without autograd the sum is written into ``fresh``: one activation buffer fewer, and on the CPU every new buffer
    costs page faults. Under autograd a new tensor is made, because an in-place update of a view (MDTA's output is
    one) or of a tensor the backward needs makes autograd copy a full activation in the backward instead.
    """
    return fresh + other if torch.is_grad_enabled() else fresh.add_(other)


def multiply_fresh(fresh: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``fresh * other`` with the same rule as :func:`add_to_fresh`."""
    return fresh * other if torch.is_grad_enabled() else fresh.mul_(other)


def channel_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """Layer norm over the channels of every pixel of (B, C, H, W), biased variance; keeps the layout of ``x``.

    Fast path: for channels-last ``x`` the channels are contiguous, so PyTorch's fused layer norm runs on a view.
    """
    if _channels_last_path(x):
        return F.layer_norm(x.permute(0, 2, 3, 1), weight.shape, weight, bias, eps).permute(0, 3, 1, 2)
    var, mean = torch.var_mean(x, dim=1, keepdim=True, unbiased=False)
    normed = (x - mean) * torch.rsqrt(var + eps)
    return torch.addcmul(bias.view(-1, 1, 1), normed, weight.view(-1, 1, 1))


def channel_cosine_similarity(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between the channels of q and k (B, heads, head_dim, HW): L2-normalised q @ k^T.

    Fast path (float32, bfloat16): divide the small (head_dim x head_dim) product by the norms instead of normalising
    the two large (head_dim x HW) operands (in bfloat16 on the CPU, F.normalize's vector norm was a sixth of the whole
    forward), and for pixels-major q and k (channels-last features) take the product through :class:`_PixelsMajorGram`,
    whose gradients keep that layout. float16 (a float16 network, or float16 autocast) normalises first, as the official
    code, to keep q @ k^T within its range; bfloat16 has float32's.
    """
    if not _fast_paths_enabled or _compute_dtype(q) == torch.float16:
        return F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    q_norm = q.square().sum(-1).sqrt().clamp_min(1e-12)
    k_norm = k.square().sum(-1).sqrt().clamp_min(1e-12)
    pixels_major = q.stride(-2) == 1 and k.stride(-2) == 1 and _autocast_available(q.device.type)
    gram = _PixelsMajorGram.apply(q, k) if pixels_major else q @ k.transpose(-2, -1)
    return gram / (q_norm.unsqueeze(-1) * k_norm.unsqueeze(-2))


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a matrix product of float32 ``x`` runs in: the autocast dtype inside autocast."""
    device = x.device.type
    if x.dtype == torch.float32 and _autocast_available(device) and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def _autocast_available(device: str) -> bool:
    # The meta device (shape and MAC counting) has no autocast state; asking for it raises.
    return torch.amp.is_autocast_available(device)


class _PixelsMajorGram(torch.autograd.Function):
    """q @ k^T for (..., head_dim, HW) operands whose head_dim axis is contiguous (views of channels-last features).

    Autograd's own product backward returns grad_q = grad @ k as a fresh (head_dim x HW) row-major tensor, the
    channels-first layout; the depthwise convolution before it then converts it back (in the MDTA block that
    conversion and the stacking of the q, k, v gradients took about an eighth of a profiled paper-size training
    step on the CPU). Here the gradients are computed transposed, (k^T @ grad^T)^T, so they come out pixels-major
    like q and k. The product runs in the autocast dtype where autocast is on, as ``q @ k^T`` would.
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        dtype = _compute_dtype(q)
        q, k = q.to(dtype), k.to(dtype)
        ctx.save_for_backward(q, k)
        with torch.autocast(q.device.type, enabled=False):
            return q @ k.transpose(-2, -1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        q, k = ctx.saved_tensors
        grad = grad.to(q.dtype)
        grad_q = grad_k = None
        if ctx.needs_input_grad[0]:
            grad_q = (k.transpose(-2, -1) @ grad.transpose(-2, -1)).transpose(-2, -1)
        if ctx.needs_input_grad[1]:
            grad_k = (q.transpose(-2, -1) @ grad).transpose(-2, -1)
        return grad_q, grad_k


def attend_and_project(attn: torch.Tensor, v: torch.Tensor, project_out: nn.Conv2d, height: int,
                       width: int) -> torch.Tensor:
    """MDTA's output project_out(attn @ v) as a (B, C, height, width) feature.

    attn (B, heads, head_dim, head_dim) is block-diagonal over the channels and ``project_out`` is a 1x1 conv, so the
    fast path folds the projection into the attention matrix: one (C x C) matrix per image, applied to the values in
    one product that writes the layout of ``v`` (channels-last stays channels-last).
    """
    b, heads, head_dim, _ = v.shape
    c = heads * head_dim
    if not _fast_paths_enabled:
        return project_out((attn @ v).view(b, c, height, width))
    mixing = torch.einsum('ohi,bhij->bohj', project_out.weight.view(c, heads, head_dim), attn).reshape(b, c, c)
    values = v.reshape(b, c, height * width)
    if is_channels_last(values):  # (HW x C) @ (C x C) keeps the pixels-by-channels layout
        out = (values.transpose(1, 2) @ mixing.transpose(1, 2)).view(b, height, width, c).permute(0, 3, 1, 2)
    else:
        out = (mixing @ values).view(b, c, height, width)
    if project_out.bias is not None:
        out = out + project_out.bias.view(c, 1, 1)
    return out


def query_key_value(x: torch.Tensor, qkv: nn.Conv2d, qkv_dwconv: nn.Conv2d,
                    num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MDTA's q, k, v: the channel thirds of qkv_dwconv(qkv(x)), each (B, heads, head_dim, HW).

    Fast path (channels-last): each third is computed as a tensor of its own with the matching slices of the weights,
    so the backward gets three gradients in the layout of their convolutions; splitting one tensor would stack them
    into a channels-first copy in the backward.
    """
    if not _channels_last_path(x):
        projected = qkv_dwconv(qkv(x)).flatten(2)  # (B, 3C, HW)
        q, k, v = projected.unflatten(1, (3, num_heads, -1)).unbind(1)
        return q, k, v
    c = qkv.out_channels // 3
    return tuple(_branch(x, qkv, qkv_dwconv, slice(i * c, (i + 1) * c)).flatten(2).unflatten(1, (num_heads, -1))
                 for i in range(3))


def gated_branches(x: torch.Tensor, project_in: nn.Conv2d, dwconv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """GDFN's two branches (gate, value): the channel halves of dwconv(project_in(x)).

    Fast path: channel halves of a channels-last tensor are strided, which slows GELU down, so each half is computed
    as a tensor of its own with the matching slices of the weights.
    """
    if not _channels_last_path(x):
        return dwconv(project_in(x)).chunk(2, dim=1)
    hidden = project_in.out_channels // 2
    return _branch(x, project_in, dwconv, slice(0, hidden)), _branch(x, project_in, dwconv, slice(hidden, 2 * hidden))


def _branch(x: torch.Tensor, pointwise: nn.Conv2d, depthwise: nn.Conv2d, part: slice) -> torch.Tensor:
    """depthwise(pointwise(x)) restricted to the output channels ``part``."""
    pointwise_bias = None if pointwise.bias is None else pointwise.bias[part]
    depthwise_bias = None if depthwise.bias is None else depthwise.bias[part]
    projected = pointwise_conv(x, pointwise.weight[part], pointwise_bias)
    return F.conv2d(projected, depthwise.weight[part], depthwise_bias, padding=1, groups=projected.shape[1])


def query_atoms(query: torch.Tensor, atoms: torch.Tensor,
                temperature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The degradation query's attention over the atoms (keys and values at once), per pixel.

    query (B, D, H, W), atoms (num_atoms, D). Returns the represented feature (B, D, H, W) and the atom weights
    softmax(temperature * query . atom) (B, num_atoms, H, W), both in the layout of ``query``.
    Fast path: a channels-last query is multiplied as pixels x D, which keeps that layout without copies.
    """
    b, _, h, w = query.shape
    if _channels_last_path(query):  # (HW x D) @ (D x atoms)
        tokens = query.permute(0, 2, 3, 1).reshape(b, h * w, -1)
        atom_weights = torch.softmax((tokens @ atoms.t()) * temperature, dim=-1)
        represented = (atom_weights @ atoms).view(b, h, w, -1).permute(0, 3, 1, 2)
        return represented, atom_weights.view(b, h, w, -1).permute(0, 3, 1, 2)
    atom_weights = torch.softmax((atoms @ query.flatten(2)) * temperature, dim=1)  # (atoms x D) @ (D x HW)
    return (atoms.t() @ atom_weights).view(b, -1, h, w), atom_weights.view(b, -1, h, w)


def rank_sum(channel: torch.Tensor, spatial: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The CP gate sum_r channel[b, r, c] * spatial[b, r, y, x] as a (B, C, H, W) tensor in the layout of ``like``.

    One product with R inner terms instead of materialising R full-size cubes; the fast path multiplies pixels x R by
    R x C so that a channels-last ``like`` gets a channels-last gate without a copy.
    """
    b, c, h, w = like.shape
    if _channels_last_path(like):
        return (spatial.flatten(2).transpose(1, 2) @ channel).view(b, h, w, c).permute(0, 3, 1, 2)
    return (channel.transpose(1, 2) @ spatial.flatten(2)).view(b, c, h, w)
