"""Visualisation decoder: maps one LeWM latent back to an image (trained after the model).

Its files in a model folder are named in `lewm_core.folders` (torch-free, so that the app can look
for a decoder without importing it).
"""

from lewm_core.folders import DECODER_CONFIG, DECODER_FILES, DECODER_WEIGHTS

__all__ = ["DECODER_CONFIG", "DECODER_FILES", "DECODER_WEIGHTS"]
