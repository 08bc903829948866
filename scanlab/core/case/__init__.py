"""Case files (versioned HDF5 with an audit chain) and regions of interest."""
