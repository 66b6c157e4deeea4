"""Utilities every layer may use: the registry, atomic file output, the tensor file format, devices."""
