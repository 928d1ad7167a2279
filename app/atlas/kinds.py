"""Kinds of unit. A unit is (model, layer, kind, index): a channel of a layer's output, or a feature of one of
the layer's dictionaries (app/atlas/dictionaries.py), a direction in that channel space, whose kind is the
dictionary's name (for example `sae-384`). The atlas records each indexed layer's kinds, and the API and the
pages carry them."""

from __future__ import annotations

import re

CHANNEL = "channel"
KIND_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"  # a dictionary's name: also part of its file name and of page paths
KIND_DESCRIPTION = (f"`{CHANNEL}` (a channel of the layer's output, the default) or the name of one of the layer's "
                    "dictionaries (its features; `fovea dictionary`)")


def is_kind_name(name: str) -> bool:
    return re.fullmatch(KIND_PATTERN, name) is not None
