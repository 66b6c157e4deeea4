"""Named paper experiments. Importing the package fills ``base.EXPERIMENTS`` with every family, in
the order the command lists them: Meta-SparseINR's figures, MSCN's, then Meta-SparseINR's variants."""

# The order of these imports is the order of the listing.
from metasparse.experiments import runner  # noqa: F401, I001  (each module registers its experiments)
from metasparse.experiments import mscn  # noqa: F401
from metasparse.experiments import variants  # noqa: F401
