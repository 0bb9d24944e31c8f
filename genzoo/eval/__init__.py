"""Evaluation: likelihoods in declared units (more metrics join in later issues)."""

from .likelihood import likelihood_report, to_bits_per_dim

__all__ = ["likelihood_report", "to_bits_per_dim"]
