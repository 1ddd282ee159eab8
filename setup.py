"""video-index: the same package runs locally and on Dataflow workers (--setup_file)."""

from setuptools import find_packages, setup

setup(
    name="video-index",
    version="0.1.0",
    description="Index a video archive with action-recognition models on Apache Beam",
    python_requires=">=3.10",
    packages=find_packages(
        include=[
            "beam_pipeline",
            "beam_pipeline.*",
            "transforms",
            "transforms.*",
            "video_index",
            "video_index.*",
        ]
    ),
    package_data={"beam_pipeline.models": ["labels/*.txt"]},
    install_requires=[
        "apache-beam>=2.60,<3",
        "tensorflow>=2.16,<2.22",
        "tensorflow-hub>=0.16",
        # PyAV: streamed decode from file objects with real timestamps and rotation.
        "av>=12",
        "pyarrow>=14",
        # The read side: SQL views over the standing rows (video_index/query.py).
        "duckdb>=1.1",
        # The index's tables as Lance datasets (video_index/table.py).
        "pylance>=14,<15",
        # Approximate nearest clips by embedding (video_index/nearest.py).
        "faiss-cpu>=1.8",
        "fsspec>=2024.2",
        "gcsfs>=2024.2",
        "s3fs>=2024.2",
        "numpy>=1.24",
        "PyYAML>=6",
        # Clip thumbnails: area resize and JPEG encode.
        "opencv-python-headless>=4.8",
        "scenedetect-headless>=0.7.2,<0.8",
        # CPU inference (--backend openvino) and int8 quantization (NNCF).
        "openvino>=2026.4,<2027",
        "nncf>=3.4,<4",
        # Free-text search: word stems, and the encoder's weights file reader (the
        # encoder's own package installs with --no-deps: requirements-nodeps.txt).
        "snowballstemmer>=2.2",
        "safetensors>=0.4",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6"],
        "dataflow": ["apache-beam[gcp]>=2.60,<3", "build>=1"],
    },
    entry_points={"console_scripts": ["video-index=beam_pipeline.cli:main"]},
)
