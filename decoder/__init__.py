"""Visualisation decoder: maps one LeWM latent back to an image (not trained with the world model)."""
