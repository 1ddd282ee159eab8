"""The pipeline's stages (Beam composites) and the Beam-free code under them."""
