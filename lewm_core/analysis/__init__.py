"""Analysis of the latent space: shared frame reading, probing, t-SNE, straightness, surprise."""
