"""Seeing the latent space: one map of a reduce_dimensions run, with the images of the objects."""
