"""The compressed file format, torch-free: the quantiser, the entropy coder and the container."""
