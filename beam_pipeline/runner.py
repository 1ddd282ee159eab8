"""The local runner: Beam's FnApiRunner, as the DirectRunner uses it for batch jobs.

Beam 2.77's DirectRunner first tries the Prism runner, which downloads a binary
from GitHub on first use: on a machine without that access a local run would
stall or depend on it. This builds the FnApiRunner the same way the DirectRunner
does for a batch pipeline, so ``--direct_num_workers`` and
``--direct_running_mode`` still apply.
"""

from __future__ import annotations

from apache_beam.runners.runner import PipelineRunner

# Runner names the DirectRunner answers to: LocalRunner runs them, in this process.
DIRECT_RUNNERS = (None, "DirectRunner", "direct")
# Runners whose workers share this machine's disk, so they can append to the CLI's
# progress file: the direct ones, and a PortableRunner, which here runs an embedded
# job server and a worker pool on this machine (README, "Scaling out").
LOCAL_RUNNERS = DIRECT_RUNNERS + ("PortableRunner",)


def _runner_name(options):
    from apache_beam.options.pipeline_options import StandardOptions

    return options.view_as(StandardOptions).runner


class LocalRunner(PipelineRunner):
    """The DirectRunner's batch path (FnApiRunner), without the Prism attempt."""

    def run_pipeline(self, pipeline, options):
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        provision_info = fn_runner.ExtendedProvisionInfo(
            beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
        )

        class _FnApiRunner(fn_runner.FnApiRunner):
            def run_via_runner_api(self, pipeline_proto, options):
                _quiet_workers(pipeline_proto)
                return super().run_via_runner_api(pipeline_proto, options)

        return _FnApiRunner(provision_info=provision_info).run_pipeline(pipeline, options)


def _quiet_workers(pipeline_proto) -> None:
    """multi_processing workers run ``local_worker`` (quiet on Ctrl-C), not Beam's module.

    The FnApiRunner names Beam's worker module in each subprocess environment's command
    line (``python -m MODULE``); only that module name changes."""
    from apache_beam.portability import python_urns

    from beam_pipeline import local_worker

    for environment in pipeline_proto.components.environments.values():
        if environment.urn == python_urns.SUBPROCESS_SDK:
            environment.payload = environment.payload.replace(
                f"-m {local_worker.BEAM_WORKER}".encode(), f"-m {local_worker.__name__}".encode()
            )


# Runners whose workers are machines of their own (Google Cloud VMs): they reach
# object storage, never this machine's disk.
CLOUD_RUNNERS = ("DataflowRunner", "dataflow")


def unreachable_by_workers(options) -> "str | None":
    """Why a cloud runner's workers could not run this job, in one line; None if they can.

    Its workers cannot read a local ``--input`` nor write a local ``--output`` (a dry
    run, which only translates the job, may name them), and without
    ``--temp_location`` Beam looks for (or creates) a default staging bucket over the
    network, which waits minutes where that is unreachable, dry run or not.
    """
    if _runner_name(options) not in CLOUD_RUNNERS:
        return None
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    given = options.get_all_options()  # the job's own flags, parsed by their subclass
    paths = () if given.get("dry_run") else (("--input", given.get("input")),
                                             ("--output", given.get("output")))  # fmt: skip
    for flag, values in paths:
        for value in values if isinstance(values, (list, tuple)) else [values]:
            if value and ("://" not in value or value.startswith("file://")):
                return (
                    f"{flag} {value} is on this machine; {_runner_name(options)}'s workers "
                    "cannot reach it: give a gs:// URL"
                )
    cloud = options.view_as(GoogleCloudOptions)
    if not (cloud.temp_location or cloud.staging_location):
        return f"{_runner_name(options)} needs --temp_location gs://BUCKET/tmp (a bucket of yours)"
    return None


def runner_for(options):
    """LocalRunner where the user asked for the DirectRunner (or nothing); else None."""
    if _runner_name(options) in DIRECT_RUNNERS:
        return LocalRunner()
    return None


def is_local(options) -> bool:
    """Whether the job's workers run on this machine (a live progress line is possible)."""
    return _runner_name(options) in LOCAL_RUNNERS
