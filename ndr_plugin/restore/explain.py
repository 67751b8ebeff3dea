"""Which atoms of the neural degradation representation (NDR) an image uses, and which known degradation that resembles.

NDRNet's degradation queries softly assign every feature position of encoder levels 1-3 to the NDR atoms (softmax over
atoms). Averaged over the image, these weights give an *atom-usage signature*: three distributions over the atoms.
Reference signatures come from the same network run on synthesised degradations (:mod:`ndr_plugin.data.degradations`)
of clean, public-domain images shipped with scikit-image; the nearest reference by cosine similarity of the concatenated
signatures names the degradation. With random or untrained weights the answer is meaningless, and it is only as good as
the training data: a real photo is compared with synthetic noise, rain, haze and bicubic blur.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ndr_plugin.restore.tiling import tile_starts

# label -> degradation spec of ndr_plugin.data.degradation_specs ('clean' = no degradation)
REFERENCE_DEGRADATIONS: dict[str, dict[str, Any] | None] = {
    'clean': None,
    'denoise_25': {'type': 'noise', 'sigmas': [25]},
    'derain': {'type': 'rain', 'style': 'light'},
    'dehaze': {'type': 'haze'},
    'sr_x2': {'type': 'downsample', 'scales': [2]},
}
REFERENCE_IMAGES = ('astronaut', 'coffee', 'chelsea')
REFERENCE_SIZE = 128
REFERENCE_SEED = 0
TOP_ATOMS = 3


def _level_usage(atom_weights: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
    """(levels, atoms): mean atom weight of each level over the unpadded image area, summed over the batch."""
    usage = []
    for level, weights in enumerate(atom_weights):
        valid = weights[..., :math.ceil(height / 2 ** level), :math.ceil(width / 2 ** level)]
        usage.append(valid.float().mean(dim=(2, 3)).sum(dim=0))
    return torch.stack(usage)


@torch.inference_mode()
def atom_usage(net: nn.Module, x: torch.Tensor, tile_size: int | None = None) -> np.ndarray:
    """Mean atom weights per level (levels, num_atoms) of one image (1, 3, H, W), each row summing to 1.

    Runs only the encoder and the degradation queries (``net.query_degradation``), on tiles of ``tile_size`` when the
    image is larger, weighting each tile by its area.
    """
    if not hasattr(net, 'query_degradation'):
        raise ValueError(f'{type(net).__name__} has no degradation representation to explain (needs NDRNet)')
    height, width = x.shape[-2:]
    tile_h, tile_w = (height, width) if tile_size is None else (min(tile_size, height), min(tile_size, width))
    total, area = None, 0
    for top in tile_starts(height, tile_h, tile_h):
        for left in tile_starts(width, tile_w, tile_w):
            _, atom_weights = net.query_degradation(x[..., top:top + tile_h, left:left + tile_w],
                                                    return_atom_weights=True)
            usage = _level_usage(atom_weights, tile_h, tile_w) * (tile_h * tile_w)
            total = usage if total is None else total + usage
            area += tile_h * tile_w * x.size(0)
    return (total / area).cpu().numpy()


def _reference_images() -> list[np.ndarray]:
    from skimage import data
    crops = []
    for name in REFERENCE_IMAGES:
        img = getattr(data, name)()
        top, left = (img.shape[0] - REFERENCE_SIZE) // 2, (img.shape[1] - REFERENCE_SIZE) // 2
        crops.append(img[top:top + REFERENCE_SIZE, left:left + REFERENCE_SIZE].astype(np.float32) / 255.)
    return crops


def reference_signatures(net: nn.Module, device: torch.device, dtype: torch.dtype = torch.float32
                         ) -> dict[str, np.ndarray]:
    """label -> mean atom usage (levels, atoms) of the network on each reference degradation (seeded, reproducible)."""
    from ndr_plugin.data.degradation_specs import build_degradation
    from ndr_plugin.data.degradations import item_rng
    clean_images = _reference_images()
    signatures = {}
    for label, spec in REFERENCE_DEGRADATIONS.items():
        degrade = build_degradation(spec) if spec is not None else None
        usages = []
        for index, clean in enumerate(clean_images):
            img = clean if degrade is None else degrade(clean, item_rng(REFERENCE_SEED, label, index))[0]
            x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(device, dtype)
            usages.append(atom_usage(net, x))
        signatures[label] = np.mean(usages, axis=0)
    return signatures


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def describe_usage(usage: np.ndarray, references: dict[str, np.ndarray]) -> dict[str, Any]:
    """JSON-ready explanation: atom usage per level, the most used atoms, similarity to each reference, the nearest."""
    similarity = {label: cosine_similarity(usage, signature) for label, signature in references.items()}
    nearest = max(similarity, key=similarity.get)
    top_atoms = [[{'atom': int(i), 'weight': float(level[i])} for i in np.argsort(-level, kind='stable')[:TOP_ATOMS]]
                 for level in usage]
    return {
        'nearest_degradation': nearest,
        'similarity': similarity,
        'top_atoms': top_atoms,
        'atom_usage': usage.tolist(),
        'reference_images': [f'skimage.data.{name} (centre {REFERENCE_SIZE}x{REFERENCE_SIZE})'
                             for name in REFERENCE_IMAGES],
    }


def format_explanation(name: str, explanation: dict[str, Any]) -> str:
    """A small readable table of :func:`describe_usage`'s result."""
    lines = [f'{name}: nearest degradation {explanation["nearest_degradation"]}',
             '  reference     cosine similarity']
    for label, value in sorted(explanation['similarity'].items(), key=lambda item: -item[1]):
        lines.append(f'  {label:<12}  {value:.4f}')
    lines.append('  level  most used atoms (weight)')
    for level, atoms in enumerate(explanation['top_atoms'], start=1):
        lines.append(f'  {level:<5}  ' + ', '.join(f'#{a["atom"]} ({a["weight"]:.3f})' for a in atoms))
    return '\n'.join(lines)
