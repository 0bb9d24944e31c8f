"""Normalizing flows with exact likelihood: planar (Rezende & Mohamed 2015), NICE (Dinh et al. 2014) and
RealNVP (Dinh et al. 2016), built from the invertible pieces in :mod:`.transforms`."""

from .base import Flow, Logistic
from .nice import NICE
from .planar import PlanarFlow
from .realnvp import RealNVP

__all__ = ["Flow", "Logistic", "NICE", "PlanarFlow", "RealNVP"]
