"""metasparse: meta-learned sparse implicit neural representations and a codec built on them."""

__version__ = "0.1.0"
