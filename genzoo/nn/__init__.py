"""Building blocks shared by the families: linear layers, MLPs and convolutional encoders/decoders."""

from .conv import ConvDecoder, ConvEncoder
from .linear import Linear
from .mlp import ACTIVATIONS, mlp

__all__ = ["ACTIVATIONS", "ConvDecoder", "ConvEncoder", "Linear", "mlp"]
