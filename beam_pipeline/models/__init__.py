"""Model specs, the registry, loaders and the I3D builder."""
