"""Building blocks shared by the families: linear layers, MLPs and convolutional encoders/decoders."""

from .conv import ConvDecoder, ConvEncoder
from .linear import Linear
from .mlp import ACTIVATIONS, Activation, mlp

__all__ = ["ACTIVATIONS", "Activation", "ConvDecoder", "ConvEncoder", "Linear", "mlp"]
