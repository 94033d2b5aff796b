"""Visualisation decoder: maps one LeWM latent back to an image (trained after the model)."""
