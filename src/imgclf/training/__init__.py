"""Training: fit (one skeleton), the low-level loops, distribution, determinism, augmentation, standardization."""
