"""Meta-training: the trainer, Meta-SparseINR's Algorithm 1, model files, data-parallel runs."""
