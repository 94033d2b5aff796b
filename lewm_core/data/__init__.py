"""Data: collecting policy episodes to HDF5, reading clips for training, held-out samples."""
