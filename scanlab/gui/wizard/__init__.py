"""The training wizard (Models > Train a model... and ``scanlab wizard``) and the Models dialog."""
