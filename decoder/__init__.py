"""Visualisation decoder: maps one LeWM latent back to an image (trained after the model).

The file names below are torch-free so that the app can look for a decoder without importing it.
"""

DECODER_CONFIG = "decoder.json"
DECODER_WEIGHTS = "decoder.safetensors"
DECODER_FILES = (DECODER_CONFIG, DECODER_WEIGHTS)  # what a folder with a trained decoder holds
