"""video-index: index a video archive with action-recognition models on Apache Beam."""

__version__ = "0.1.0"
