"""Names the deployment, the `sluice` command and the local stack share, each spelled once.

Terraform spells them again in HCL; a unit test (tests/unit/test_names_terraform.py) holds the two
spellings together.
"""

from typing import Final

LIVE_ALIAS: Final = "live"
"""The alias every trigger invokes, and with it the async configuration (DESIGN §7): S3's
notifications, the event source mapping, Firehose's processor, the redrive schedule
(`alias_name` in infrastructure/terraform/locals.tf)."""
