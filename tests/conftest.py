"""Shared test fixtures: a moto S3 server on 127.0.0.1 and fresh buckets on it."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator

import pytest

# Set before anything imports Ray; tests must not need a Ray auth token.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

log = logging.getLogger(__name__)


def _fake_aws_env() -> None:
    """Dummy credentials for moto; never real ones, and no EC2 metadata lookups."""
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (free port) for the session; yields "127.0.0.1:PORT"."""
    from moto.server import ThreadedMotoServer

    _fake_aws_env()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"{host}:{port}"
    log.info("moto S3 server at %s", endpoint)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def s3_uri(s3_server: str) -> Iterator[str]:
    """A fresh bucket on the moto server; yields "s3://BUCKET/prefix?endpoint_override=...&scheme=http"."""
    import boto3

    _fake_aws_env()
    bucket = f"layergw-test-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=f"http://{s3_server}", region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    yield f"s3://{bucket}/prefix?endpoint_override={s3_server}&scheme=http"


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    """A GCS emulator (the gcp-storage-emulator package, in memory) on 127.0.0.1 for the
    session; yields "127.0.0.1:PORT"."""
    import socket

    from gcp_storage_emulator.server import create_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    log.info("GCS emulator at 127.0.0.1:%d", port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def gs_uri(gcs_server: str) -> Iterator[str]:
    """A fresh bucket on the GCS emulator; yields "gs://BUCKET/prefix?endpoint_override=...&scheme=http&anonymous=true"."""
    import json
    import urllib.request

    bucket = f"layergw-test-{uuid.uuid4().hex[:12]}"
    req = urllib.request.Request(f"http://{gcs_server}/storage/v1/b?project=test", method="POST",
                                 data=json.dumps({"name": bucket}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200, resp.read()
    yield f"gs://{bucket}/prefix?endpoint_override={gcs_server}&scheme=http&anonymous=true"


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's retries in this process without their seconds of backoff."""
    import layergw.store as store_module

    monkeypatch.setattr(store_module, "_RETRY_BASE_S", 0.01)


def pytest_collection_modifyitems(config, items) -> None:
    """``gpu``-marked tests run only where torch sees a CUDA GPU, and say why they skip elsewhere."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="gpu test: torch sees no CUDA GPU on this machine")
    for item in gpu_tests:
        item.add_marker(skip)
