"""Applications of trained models: latent interpolation and vector arithmetic (:mod:`.interpolate`)."""

from .interpolate import arithmetic, infer_latent, interpolate, latent_path

__all__ = ["arithmetic", "infer_latent", "interpolate", "latent_path"]
