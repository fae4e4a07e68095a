"""Transfer learning: bottleneck extraction, the feature files, the SVM on them."""
