"""Training: folder datasets, noise synthesis as users' files arrive, losses, one task per model, the loop."""
