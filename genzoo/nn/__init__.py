"""Building blocks shared by the families: MLPs and convolutional encoders/decoders."""

from .conv import ConvDecoder, ConvEncoder
from .mlp import ACTIVATIONS, mlp

__all__ = ["ACTIVATIONS", "ConvDecoder", "ConvEncoder", "mlp"]
