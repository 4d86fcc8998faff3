"""The names infrastructure/names.py spells once for Python are the ones the Terraform spells in
HCL (infrastructure/terraform/locals.tf)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from infrastructure.names import LIVE_ALIAS
from transform.intake.requests import ROUTES

TERRAFORM: Final = Path(__file__).resolve().parents[2] / "infrastructure" / "terraform"


def local_string(name: str) -> str:
    match = re.search(rf'^\s*{name}\s*=\s*"([^"]*)"', (TERRAFORM / "locals.tf").read_text(), re.M)
    assert match, f"locals.tf: local {name} not found"
    return match.group(1)


def test_the_alias_every_trigger_invokes_is_the_one_python_names() -> None:
    assert local_string("alias_name") == LIVE_ALIAS


def test_the_intake_routes_terraform_deploys_are_those_the_handler_serves() -> None:
    text = (TERRAFORM / "apigateway.tf").read_text()
    match = re.search(r"^\s*intake_routes\s*=\s*\[([^\]]*)\]", text, re.M)
    assert match, "apigateway.tf: local intake_routes not found"
    assert tuple(re.findall(r'"([^"]+)"', match.group(1))) == ROUTES
