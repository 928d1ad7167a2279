"""Kinds of unit. A unit is (model, layer, kind, index): today every unit is a channel of a layer's output;
a dictionary's features (a later kind) are directions in that channel space, indexed and shown the same way.
The atlas records each indexed layer's kind, and the API and the pages carry it."""

from __future__ import annotations

CHANNEL = "channel"
UNIT_KINDS = {CHANNEL: "a channel of the layer's output"}
