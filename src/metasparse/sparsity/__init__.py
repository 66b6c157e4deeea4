"""Sparsity: hard-concrete L0 gates (MSCN), binary masks and global magnitude pruning (Meta-SparseINR)."""
