"""Feature visualisation (activation maximisation): images optimised to drive units of a layer, many units
in one batch. Torch only, in Lucid's pieces: parameterisations (`param.py`), transforms (`transforms.py`),
objectives (`objectives.py`), and the optimisation loop (`render.py`)."""

from app.engine.featurevis.objectives import channel, direction, diversity, neuron
from app.engine.featurevis.param import FourierImage, PixelImage
from app.engine.featurevis.render import render
from app.engine.featurevis.transforms import standard_transforms

__all__ = ["FourierImage", "PixelImage", "channel", "direction", "diversity", "neuron", "render",
           "standard_transforms"]
