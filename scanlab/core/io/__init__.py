"""Reading and writing files: safe image decoding, hashing, atomic writes and the
HDF5 window store."""
