"""The weights that ship with ndr_plugin: a compact NDRNet trained by our own code on CPU (``options/ndr_compact.yml``).

``MODEL_CARD.md`` beside this file says how they were made and how well they do; ``ndr_compact_card.json`` holds the
same facts for programs (and the SHA-256 the file must have); ``ndr_compact_data.json`` lists every training image
with its SHA-256. ``ndr-restore`` and :class:`~ndr_plugin.restore.restorer.Restorer` use these weights when none are
given. ``python -m ndr_plugin.weights.make_card`` ships a newly trained run and rewrites the card.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ['SHIPPED_WEIGHTS', 'CARD_JSON', 'DATA_MANIFEST', 'MODEL_CARD', 'ShippedWeightsError', 'file_sha256',
           'read_card', 'shipped_weights', 'shipped_description']

HERE = Path(__file__).resolve().parent
SHIPPED_WEIGHTS = HERE / 'ndr_compact.pth'
CARD_JSON = HERE / 'ndr_compact_card.json'
DATA_MANIFEST = HERE / 'ndr_compact_data.json'
MODEL_CARD = HERE / 'MODEL_CARD.md'


class ShippedWeightsError(RuntimeError):
    """The shipped weights are missing or are not the file their model card describes."""


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def read_card() -> dict[str, Any]:
    """The machine-readable model card (``ndr_compact_card.json``)."""
    if not CARD_JSON.is_file():
        raise ShippedWeightsError(f'{CARD_JSON} is missing: this installation has no shipped model card; reinstall '
                                  'ndr_plugin, or pass weights explicitly (--weights)')
    return json.loads(CARD_JSON.read_text(encoding='utf-8'))


def shipped_weights() -> Path:
    """The shipped weights file, after checking that its SHA-256 is the one its model card gives.

    Raises:
        ShippedWeightsError: the file or its card is missing, or the file is not the one the card describes (a
            partial download or a local edit): such weights would give results the card does not stand for.
    """
    card = read_card()
    if not SHIPPED_WEIGHTS.is_file():
        raise ShippedWeightsError(f'{SHIPPED_WEIGHTS} is missing: reinstall ndr_plugin, or pass weights explicitly '
                                  '(--weights)')
    digest = file_sha256(SHIPPED_WEIGHTS)
    if digest != card['sha256']:
        raise ShippedWeightsError(f'{SHIPPED_WEIGHTS}: SHA-256 {digest} is not the {card["sha256"]} that its model '
                                  f'card {CARD_JSON.name} gives; reinstall ndr_plugin (or pass --weights)')
    return SHIPPED_WEIGHTS


def shipped_description() -> str:
    """One line naming the shipped model, for the first line a restoring tool prints."""
    card = read_card()
    return (f"the shipped compact NDRNet ({SHIPPED_WEIGHTS.name}: {card['parameters']:,} parameters, "
            f"{card['iterations']:,} iterations on {card['data']['images']} clean photographs; "
            f'model card: {MODEL_CARD})')
