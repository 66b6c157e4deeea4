"""Coordinate networks: SIREN and the Fourier-feature variant."""
