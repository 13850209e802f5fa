"""A Python SDK worker started by a Flink or Spark job server (Beam's PROCESS
environment): what the SDK container's Go `boot` does, minus installing
artifacts (the worker runs the submitting interpreter, where seqshards is).

Place in the flow: the engine starts `beam.engines.worker_command()` with the
flags below -> **process_worker** asks the provision service for the pipeline
options -> Beam's `sdk_worker_main` serves bundles until the engine stops it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

# The flags Beam's ProcessEnvironmentFactory passes (the container boot contract).
FLAGS = (
    "id",
    "logging_endpoint",
    "artifact_endpoint",
    "provision_endpoint",
    "control_endpoint",
    "semi_persist_dir",
)


def harness_environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment `sdk_worker_main` reads, from the provision service.

    Returns:
      WORKER_ID, PIPELINE_OPTIONS (JSON), the control / logging / status
      endpoint descriptors (text protos), RUNNER_CAPABILITIES and
      SEMI_PERSISTENT_DIRECTORY.
    """
    import grpc
    from apache_beam.portability.api import (
        beam_provision_api_pb2,
        beam_provision_api_pb2_grpc,
    )
    from google.protobuf import json_format, text_format

    with grpc.insecure_channel(args.provision_endpoint) as channel:
        stub = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel)
        info = stub.GetProvisionInfo(
            beam_provision_api_pb2.GetProvisionInfoRequest(),
            metadata=[("worker_id", args.id)],
        ).info
    control = info.control_endpoint
    if not control.url:
        control.url = args.control_endpoint
    env = {
        "WORKER_ID": args.id,
        "PIPELINE_OPTIONS": json_format.MessageToJson(info.pipeline_options),
        "CONTROL_API_SERVICE_DESCRIPTOR": text_format.MessageToString(control),
        "RUNNER_CAPABILITIES": " ".join(info.runner_capabilities),
    }
    logging = info.logging_endpoint
    if not logging.url and args.logging_endpoint:
        logging.url = args.logging_endpoint
    if logging.url:
        env["LOGGING_API_SERVICE_DESCRIPTOR"] = text_format.MessageToString(logging)
    if args.semi_persist_dir:
        env["SEMI_PERSISTENT_DIRECTORY"] = args.semi_persist_dir
    return env


def main(argv: Sequence[str]) -> None:
    """Runs one SDK worker until the runner closes its control channel."""
    parser = argparse.ArgumentParser(prog="seqshards-sdk-worker")
    for flag in FLAGS:
        parser.add_argument(f"--{flag}", default="")
    args, _ = parser.parse_known_args(list(argv))
    if not args.provision_endpoint:
        raise ValueError(
            "Invalid value for argument `--provision_endpoint`. Expected the "
            "host:port a Beam job server passes to a PROCESS worker. Received: "
            f"argv={list(argv)!r}"
        )
    os.environ.update(harness_environment(args))
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main([])
