"""Files posted to the HTTPS intake of the local stack come out of MinIO exactly once, byte for
byte: the intake lands them, and the pipeline behind it is the one S3 producers use."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
import requests

from infrastructure.local.stack.stack_file import read_stack
from tests.integration.runtime_support import wait_until
from tests.slow.test_local_stack import TIME_SCALE, delivered_files, sluice

pytestmark = pytest.mark.slow

BODIES = {
    "reports/daily report.json": b'{"report": "daily"}',
    "images/pixel.bin": bytes(range(256)) * 40,
    "empty.txt": b"",
}


def test_files_posted_to_the_intake_are_delivered_once_byte_for_byte(tmp_path: Path) -> None:
    # GIVEN the local stack, and the demo producer's key it printed
    started = sluice(tmp_path, "up", "--detach", "--time-scale", str(TIME_SCALE))
    assert started.returncode == 0, started.stderr + started.stdout
    try:
        stack = read_stack(tmp_path)
        assert stack.intake_endpoint is not None
        assert f"Bearer {stack.demo_producer_key}" in started.stdout
        headers = {"Authorization": f"Bearer {stack.demo_producer_key}"}
        # WHEN files are posted, one of them twice with one Idempotency-Key (a retry)
        keys = {}
        for name, body in BODIES.items():
            response = requests.post(
                f"{stack.intake_endpoint}/v1/files/{name}",
                data=body,
                headers={**headers, "Idempotency-Key": f"k-{name}"},
                timeout=60,
            )
            assert response.status_code == 201, response.text
            keys[response.json()["key"]] = body
        retry = requests.post(
            f"{stack.intake_endpoint}/v1/files/empty.txt",
            data=b"",
            headers={**headers, "Idempotency-Key": "k-empty.txt"},
            timeout=60,
        )
        assert retry.headers["Idempotent-Replayed"] == "true"

        # THEN each arrives in MinIO once, byte for byte, its sha256 the one the intake answered
        def all_arrived() -> list[tuple[str, bytes, dict[str, object]]] | None:
            found = delivered_files(stack)
            return found if {key for key, _, _ in found} >= set(keys) else None

        arrived = wait_until(all_arrived, what="the posted files in MinIO", timeout=240)
        counts = Counter(key for key, _, _ in arrived if key in keys)
        assert counts == Counter(set(keys))
        for key, body, entry in arrived:
            if key in keys:
                assert body == keys[key]
                assert entry["sha256"] == hashlib.sha256(body).hexdigest()
    finally:
        sluice(tmp_path, "down", "--timeout", "60")
