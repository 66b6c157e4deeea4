"""Pictures of signals and reconstructions (saved through the one atomic writer)."""
