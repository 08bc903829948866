"""Training: folder-per-scanner data sets, the training configuration and loop."""
