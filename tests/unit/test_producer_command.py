"""`sluice producer add|list` on moto in process: keys shown once, only hashes kept."""

from __future__ import annotations

import dataclasses
import json

import boto3
import pytest

from infrastructure.cli import main
from infrastructure.cli.deployment import Deployment
from infrastructure.local.provision.stack_resources import StackNames
from tests.conftest import REGION
from transform.intake.producers import Producers

SECRET = StackNames.for_prefix("unit", 2).producers_secret


@pytest.fixture
def target(provisioned: Deployment, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    with_intake = dataclasses.replace(provisioned, producers_secret=SECRET)
    monkeypatch.setattr("infrastructure.cli.deployment.resolve", lambda args, root: with_intake)
    return with_intake


def secret() -> str:
    value = boto3.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=SECRET)
    return str(value["SecretString"])


def test_a_key_is_shown_once_and_only_its_hash_kept(
    target: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN a producer is added, then given a second key (a rotation)
    assert main.main(["producer", "add", "acme"]) == 0
    first = capsys.readouterr().out.strip().splitlines()[-1]
    assert main.main(["producer", "add", "acme"]) == 0
    second = capsys.readouterr().out.strip().splitlines()[-1]
    # THEN both keys name acme, neither is in the secret, and list counts two keys
    registry = Producers.parse(secret())
    assert registry.identify(f"Bearer {first}") == "acme"
    assert registry.identify(f"Bearer {second}") == "acme"
    assert first not in secret()
    assert second not in secret()
    assert main.main(["producer", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"producers": {"acme": 2}}


def test_a_bad_producer_name_is_a_usage_error(
    target: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main.main(["producer", "add", "Not Valid"]) == 2
    err = capsys.readouterr().err
    assert "must match" in err
    assert len(err.strip().splitlines()) == 1
    assert json.loads(secret()) == {"producers": {}}


def test_a_deployment_without_an_intake_says_so(
    provisioned: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("infrastructure.cli.deployment.resolve", lambda args, root: provisioned)
    assert main.main(["producer", "list"]) == 1
    assert "has no HTTPS intake" in capsys.readouterr().err


def test_list_with_no_producers(target: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["producer", "list"]) == 0
    assert "no producers yet" in capsys.readouterr().out
