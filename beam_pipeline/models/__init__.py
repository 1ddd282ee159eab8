"""Model specs and the registry, the model-call layer (backend.py), one module per model
kind with its RunInference handler, and the default model (I3D)."""
