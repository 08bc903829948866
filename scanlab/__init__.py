"""ScanLab: scanner model identification and forgery localisation for scanned images."""

__version__ = "0.1.0"
