"""An apply and a destroy of the whole Terraform configuration (infrastructure/terraform, with
env/dev.tfvars) against a moto server, through the AWS provider's custom endpoints.

The module is copied to a temporary directory with what it reads through `path.module`
(`../tunables.json`, `../schemas/`, `queries/`), the lock file and an `override.tf` that points the
provider at moto, keeps the state local and reads the account id from moto's STS. The fixture
packages of `tests/fixtures/lambda` stand in for `make package`'s zips. Nothing of the production
configuration is changed; three things moto 5.2.5 cannot do are worked around here, and only here:

- Not applied: the staging bucket's lifecycle configuration (`override.tf` sets its `count` to 0).
  Its `expire-delivered-windows` rule filters on `and { prefix, tags }`; the provider sends that
  filter with `ObjectSizeGreaterThan = 0`, moto drops it when it reads the rules back, and the
  provider then waits for rules equal to what it put until it times out (3 minutes) and fails.
- Applied with another value: `transition_default_minimum_object_size = all_storage_classes_128K`
  instead of the default `varies_by_storage_class`. moto ignores the setting and always reports
  `all_storage_classes_128K`, so the provider's wait for the landing lifecycle never ends
  otherwise. The production value is asserted by the mocked `terraform test` (tests/s3.tftest.hcl).
- Not destroyed by Terraform: the Athena named queries. moto does not implement DeleteNamedQuery
  (HTTP 500, which the provider retries without end), so they are removed from the state before
  `destroy`; moto's own end discards them.

Also known of moto (issue 5): `aws_sqs_queue_redrive_allow_policy` hangs there (the
configuration does not use one), and processor parameters equal to Firehose's defaults are dropped
by real Firehose on read (a perpetual diff that moto does not show). Neither is asserted here.

Between apply and destroy the test checks a few settings in moto with boto3, and compares each
function's environment as Terraform set it with the one the local stack gives the same function.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from infrastructure import environment
from infrastructure.local.lambdas.workers import LOCAL_PROFILE, FunctionConfig
from infrastructure.local.lifeline import stop_process_group
from infrastructure.local.provision.moto_service import MotoServer, start_moto
from infrastructure.local.provision.stack_resources import StackNames, StackResources
from infrastructure.tunables import Tunables, parse_tunables, read_tunables_document
from tests.slow.least_privilege import OPERATIONS_FILE, call_shape
from tests.slow.least_privilege import problems as least_privilege_problems

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
INFRASTRUCTURE = REPO / "infrastructure"
TERRAFORM_DIR = INFRASTRUCTURE / "terraform"
FIXTURE_PACKAGES = TERRAFORM_DIR / "tests" / "fixtures" / "lambda"
PLUGIN_DIR = Path(os.environ.get("TF_PLUGIN_DIR", "/opt/tf-plugins"))
TERRAFORM = os.environ.get("TERRAFORM", "terraform")

MIB = 1048576
INIT_TIMEOUT_SECONDS = 300
APPLY_TIMEOUT_SECONDS = 900  # about 1 m 45 s measured
DESTROY_TIMEOUT_SECONDS = 600  # about 1 minute measured

# Every service the configuration (and the provider's own calls) reaches, by the provider's
# `endpoints` argument names. `events` and `ec2` are not used with dev.tfvars (no VPC) but are
# listed so that no call can ever leave for real AWS.
ENDPOINT_SERVICES = (
    "apigatewayv2",
    "athena",
    "cloudwatch",
    "dynamodb",
    "ec2",
    "events",
    "firehose",
    "glue",
    "iam",
    "kms",
    "lambda",
    "logs",
    "s3",
    "scheduler",
    "secretsmanager",
    "sns",
    "sqs",
    "sts",
)

# What moto cannot apply or destroy (see the module docstring).
MOTO_VARIABLES = ("-var=transition_default_minimum_object_size=all_storage_classes_128K",)
NOT_DESTROYABLE_ON_MOTO = ("aws_athena_named_query.this",)
# A Glue CreateTable that moto answers AlreadyExists (see Terraform.apply): the table's name and
# address, and the catalog id and database of a table the same apply created.
GLUE_TABLE_EXISTS = re.compile(
    r"Error: creating Glue Catalog Table \(([^)]+)\): [^\n]*AlreadyExistsException[^\n]*\n\n"
    r"  with (aws_glue_catalog_table\.[^,\n]+),"
)
GLUE_TABLE_CREATED = re.compile(
    r"aws_glue_catalog_table\.[^:]+: Creation complete after \S+ \[id=([^:\]]+:[^:\]]+):"
)
# The same for a Lambda CreateFunction answered ResourceConflictException: its name (the id
# Terraform imports it by) and address.
LAMBDA_FUNCTION_EXISTS = re.compile(
    r"Error: creating Lambda Function \(([^)]+)\): [^\n]*ResourceConflictException[^\n]*\n\n"
    r"  with (aws_lambda_function\.[^,\n]+),"
)
# A DeleteTable that moto answers not-found (see Terraform.destroy): only this is retried.
MOTO_TERSE_NOT_FOUND = re.compile(
    r"deleting AWS DynamoDB Table \([^)]+\).*"
    r"ResourceNotFoundException: Requested resource not found$",
    re.MULTILINE,
)

# Variables the local stack adds to every function and Terraform does not set on AWS: the
# tunables profile (unset on AWS means `aws`) and boto3's endpoint variables.
LOCAL_ONLY_PREFIXES = (environment.PROFILE, "AWS_ENDPOINT_URL")


def override_tf(endpoint: str) -> str:
    endpoints = "\n".join(f'    {service} = "{endpoint}"' for service in ENDPOINT_SERVICES)
    return f"""\
terraform {{
  backend "local" {{}}
}}

provider "aws" {{
  access_key                  = "test"
  secret_key                  = "test"
  s3_use_path_style           = true
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = false # the account id comes from moto's STS

  endpoints {{
{endpoints}
  }}
}}

# moto drops the lifecycle filter's ObjectSizeGreaterThan = 0 on read: the provider would wait
# for its rules until it times out. Not applied on moto (see the test's docstring).
resource "aws_s3_bucket_lifecycle_configuration" "staging" {{
  count = 0
}}
"""


def copy_module(destination: Path) -> Path:
    """The module and what it reads through `path.module` (locals.tf: ../tunables.json,
    ../schemas/envelope.avsc; glue_athena.tf: queries/), in the same layout."""
    module = destination / "infrastructure" / "terraform"
    module.mkdir(parents=True)
    for tf in TERRAFORM_DIR.glob("*.tf"):
        shutil.copy2(tf, module / tf.name)
    shutil.copy2(TERRAFORM_DIR / ".terraform.lock.hcl", module / ".terraform.lock.hcl")
    for folder in ("queries", "env"):
        shutil.copytree(TERRAFORM_DIR / folder, module / folder)
    shutil.copy2(INFRASTRUCTURE / "tunables.json", module.parent / "tunables.json")
    shutil.copytree(INFRASTRUCTURE / "schemas", module.parent / "schemas")
    return module


@dataclass
class Terraform:
    directory: Path
    env: dict[str, str]
    logs: Path

    def run(self, *args: str, timeout: float) -> float:
        """Run `terraform <args>`, its output to a log file; return the seconds it took.
        Fails the test on a non-zero exit or after `timeout`, with the log's tail."""
        code, elapsed, log = self.attempt(*args, timeout=timeout)
        assert code == 0, f"terraform {' '.join(args)} exited with {code}\n{tail(log)}"
        return elapsed

    def destroy(self, *args: str, timeout: float) -> float:
        """`terraform destroy <args>`, run a second time only after moto's terse not-found.

        When a DeleteTable is retried (the first answer was slow on a loaded machine), moto
        answers "Requested resource not found", while the provider treats a table as already
        gone only on DynamoDB's own "Requested resource not found: Table: …". A second destroy
        refreshes, finds the table gone and finishes; any other failure fails the test."""
        code, elapsed, log = self.attempt("destroy", *args, timeout=timeout)
        if code != 0 and MOTO_TERSE_NOT_FOUND.search(log.read_text(errors="replace")):
            code, again, log = self.attempt("destroy", *args, timeout=timeout)
            elapsed += again
        assert code == 0, f"terraform destroy {' '.join(args)} exited with {code}\n{tail(log)}"
        return elapsed

    def apply(self, *args: str, timeout: float) -> float:
        """`terraform apply <args>`; after moto's answer to a retried Glue CreateTable or Lambda
        CreateFunction, what was created imported and the apply run again.

        On a loaded machine the provider may send CreateTable or CreateFunction again after the
        first call made the resource (its answer was slow); moto then answers that it exists,
        and it is created but not in the state. A table is imported from the id of a sibling
        table the same apply created (catalog id and database), a function by its name, once;
        any other failure fails."""
        code, elapsed, log = self.attempt("apply", *args, timeout=timeout)
        text = log.read_text(errors="replace")
        sibling = GLUE_TABLE_CREATED.search(text)
        clashes = [
            (address, f"{sibling[1]}:{name}")
            for name, address in GLUE_TABLE_EXISTS.findall(text)
            if sibling is not None
        ] + [(address, name) for name, address in LAMBDA_FUNCTION_EXISTS.findall(text)]
        if code != 0 and clashes:
            for address, resource_id in clashes:
                self.run("import", "-no-color", *args[2:], address, resource_id, timeout=120)
            code, again, log = self.attempt("apply", *args, timeout=timeout)
            elapsed += again
        assert code == 0, f"terraform apply {' '.join(args)} exited with {code}\n{tail(log)}"
        return elapsed

    def attempt(self, *args: str, timeout: float) -> tuple[int, float, Path]:
        """Run `terraform <args>` once: its exit status, seconds taken and log file.
        Fails the test after `timeout`, with the log's tail."""
        log = self.logs / f"terraform-{args[0]}-{time.monotonic_ns()}.log"
        started = time.monotonic()
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603  # fixed argv, no shell
                [TERRAFORM, *args],
                cwd=self.directory,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its provider plugins go with it on a timeout
            )
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stop_process_group(process.pid)
                process.wait()
                pytest.fail(f"terraform {args[0]} ran over {timeout:.0f} s\n{tail(log)}")
        return code, time.monotonic() - started, log

    def output(self) -> dict[str, Any]:
        completed = subprocess.run(  # noqa: S603  # fixed argv, no shell
            [TERRAFORM, "output", "-json", "-no-color"],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            check=True,
            timeout=120,
        )
        return {name: value["value"] for name, value in json.loads(completed.stdout).items()}

    def state_list(self) -> list[str]:
        completed = subprocess.run(  # noqa: S603  # fixed argv, no shell
            [TERRAFORM, "state", "list"],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            check=True,
            timeout=120,
        )
        return completed.stdout.decode().split()


def tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def terraform_env(data_dir: Path) -> dict[str, str]:
    """This process's environment without AWS settings that could reach another endpoint or
    account, with Terraform's working data in `data_dir`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "TF_VAR_", "TF_CLI_ARGS"))
    }
    env.update(
        TF_DATA_DIR=str(data_dir),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    # A CLI configuration named but missing only earns a warning on every command (check.sh).
    if env.get("TF_CLI_CONFIG_FILE") and not Path(env["TF_CLI_CONFIG_FILE"]).exists():
        env["TF_CLI_CONFIG_FILE"] = os.devnull
    return env


@pytest.fixture
def moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    # The provider attaches AWS-managed policies by ARN only in IAM data it can read back.
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    server = start_moto(tmp_path / "moto.log")
    try:
        yield server
    finally:
        server.stop()


def local_environments(tunables: Tunables, outputs: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Each function's environment as the local stack configures it: the local stack's own
    bindings (StackResources.function_bindings) and the endpoint variables it passes."""
    names = StackNames.for_prefix("sluice-local", tunables.firehose.stream_count)
    # Queue URLs stand in (the delivery DLQ's and the ingest queue's reach functions).
    urls = {
        field.name: f"http://local/{field.name}"
        for field in dataclasses.fields(StackResources)
        if field.name != "names"
    }
    resources = StackResources(names=names, **urls)
    endpoints = {
        "AWS_ENDPOINT_URL": "http://local/moto",
        "AWS_ENDPOINT_URL_FIREHOSE": "http://local/firehose",
        "AWS_ENDPOINT_URL_LAMBDA": "http://local/lambda",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://local/moto",
    }
    assert set(tunables.functions) == set(outputs["function_names"])
    return {
        name: FunctionConfig.from_spec(
            name,
            spec,
            resources=resources.function_bindings("delivery:live"),
            endpoints=endpoints,
        ).environment
        for name, spec in tunables.functions.items()
    }


def check_environments(tunables: Tunables, outputs: Mapping[str, Any], lambda_client: Any) -> None:
    local = local_environments(tunables, outputs)
    for name, spec in tunables.functions.items():
        deployed = lambda_client.get_function_configuration(
            FunctionName=outputs["function_names"][name]
        )["Environment"]["Variables"]
        assert deployed == outputs["function_environment"][name], name

        local_only = {v for v in local[name] if v.startswith(LOCAL_ONLY_PREFIXES)}
        assert local[name][environment.PROFILE] == LOCAL_PROFILE
        assert any(v.startswith("AWS_ENDPOINT_URL") for v in local_only), name
        assert not any(v.startswith(LOCAL_ONLY_PREFIXES) for v in deployed), (name, deployed)

        # The same names per function, apart from the local stack's own.
        assert set(deployed) == set(local[name]) - local_only, name
        # Static values equal (POWERTOOLS_*), and as tunables.json has them.
        for variable, value in spec.environment.items():
            assert deployed[variable] == local[name][variable] == value, (name, variable)
        # Resource variables bound on both sides, to this deployment's resources on AWS.
        for variable in spec.resource_environment:
            assert deployed[variable], (name, variable)
            assert local[name][variable], (name, variable)
        assert set(spec.environment) | set(spec.resource_environment) == set(deployed), name

    expected = {
        environment.LANDING_BUCKET: outputs["landing_bucket"],
        environment.STAGING_BUCKET: outputs["staging_bucket"],
        environment.IDEMPOTENCY_TABLE: outputs["idempotency_table"],
        environment.FIREHOSE_STREAMS: ",".join(outputs["firehose_streams"]),
        environment.LEDGER_TABLE: outputs["ledger_table"],
        environment.DELIVERY_DLQ_URL: outputs["delivery_dlq_url"],
        environment.DELIVERY_FUNCTION: outputs["function_alias_arns"]["delivery"],
        environment.INGEST_QUEUE_URL: outputs["ingest_queue_url"],
    }
    for name, variables in outputs["function_environment"].items():
        for variable, value in expected.items():
            if variable in variables:
                assert variables[variable] == value, (name, variable)


def check_resources(tunables: Tunables, outputs: Mapping[str, Any], clients: Any) -> None:
    sqs, s3, firehose, lambda_client = clients

    ingest = sqs.get_queue_attributes(QueueUrl=outputs["ingest_queue_url"], AttributeNames=["All"])
    attributes = ingest["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == tunables.ingest.max_receive_count
    assert redrive["deadLetterTargetArn"].endswith(":sluice-dev-ingest-dlq")
    assert int(attributes["MessageRetentionPeriod"]) == tunables.ingest.queue_retention_seconds
    assert int(attributes["VisibilityTimeout"]) == tunables.ingest.visibility_timeout_seconds
    assert attributes["SqsManagedSseEnabled"] == "true"  # dev: no customer key

    for bucket in (outputs["landing_bucket"], outputs["staging_bucket"]):
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled", bucket
    rules = s3.get_bucket_lifecycle_configuration(Bucket=outputs["landing_bucket"])["Rules"]
    by_id = {rule["ID"]: rule for rule in rules}
    assert set(by_id) >= {
        "expire-inline-files",
        "expire-delivered-ref-files",
        "noncurrent-inline-files",
        "noncurrent-delivered-ref-files",
    }
    # files over the inline limit expire only once delivery tagged them delivered
    limit = tunables.forwarder.inline_limit_bytes
    assert by_id["expire-inline-files"]["Filter"] == {"ObjectSizeLessThan": limit + 1}
    delivered = by_id["expire-delivered-ref-files"]["Filter"]["And"]
    assert delivered["ObjectSizeGreaterThan"] == limit
    assert delivered["Tags"] == [{"Key": tunables.delivery.delivered_tag, "Value": "true"}]

    assert len(outputs["firehose_streams"]) == tunables.firehose.stream_count
    for stream in outputs["firehose_streams"]:
        description = firehose.describe_delivery_stream(DeliveryStreamName=stream)
        destination = description["DeliveryStreamDescription"]["Destinations"][0]
        s3_destination = destination["ExtendedS3DestinationDescription"]
        assert s3_destination["BufferingHints"] == {
            "SizeInMBs": tunables.firehose.destination_buffer_bytes // MIB,
            "IntervalInSeconds": tunables.firehose.destination_buffer_seconds,
        }
        assert s3_destination["CompressionFormat"] == "GZIP"
        assert s3_destination["FileExtension"] == tunables.firehose.file_extension
        (processor,) = s3_destination["ProcessingConfiguration"]["Processors"]
        parameters = {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}
        assert parameters["LambdaArn"] == outputs["function_alias_arns"]["processor"]
        assert parameters["BufferIntervalInSeconds"] == str(
            tunables.firehose.processor_buffer_seconds
        )

    for name, function_name in outputs["function_names"].items():
        alias = lambda_client.get_alias(FunctionName=function_name, Name="live")
        assert alias["FunctionVersion"] == outputs["function_versions"][name], name
    (mapping,) = lambda_client.list_event_source_mappings(
        FunctionName=outputs["function_alias_arns"]["forwarder"]
    )["EventSourceMappings"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == tunables.ingest.batch_size


def test_apply_and_destroy_against_moto(tmp_path: Path, moto: MotoServer) -> None:
    assert shutil.which(TERRAFORM), f"{TERRAFORM} not found (Terraform >= 1.11 is needed)"
    tunables = parse_tunables(read_tunables_document(), "aws")
    module = copy_module(tmp_path / "module")
    (module / "override.tf").write_text(override_tf(moto.endpoint))
    terraform = Terraform(module, terraform_env(tmp_path / "tf-data"), tmp_path)
    variables = (
        "-var-file=env/dev.tfvars",
        f"-var=package_dir={FIXTURE_PACKAGES}",
        *MOTO_VARIABLES,
    )

    # GIVEN the module initialised from the provider mirror (the registry where there is none)
    init = ["init", "-no-color", "-input=false", "-lockfile=readonly"]
    if (PLUGIN_DIR / "registry.terraform.io").is_dir():
        init.append(f"-plugin-dir={PLUGIN_DIR}")
    timings = {"init": terraform.run(*init, timeout=INIT_TIMEOUT_SECONDS)}

    # WHEN the whole dev configuration is applied to moto
    timings["apply"] = terraform.apply(
        "-no-color", "-auto-approve", *variables, timeout=APPLY_TIMEOUT_SECONDS
    )

    # THEN what it created is there, as tunables.json says
    outputs = terraform.output()
    clients = {
        service: boto3.client(
            service,
            endpoint_url=moto.endpoint,
            region_name=tunables.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",  # moto's dummy credentials
        )
        for service in ("sqs", "s3", "firehose", "lambda")
    }
    check_resources(tunables, outputs, list(clients.values()))
    # AND each function's environment has the names the local stack gives it
    check_environments(tunables, outputs, clients["lambda"])
    # AND each function's policy allows every call it makes, and nothing it does not need
    policies = {name: json.loads(doc) for name, doc in outputs["function_policies"].items()}
    listed = json.loads(OPERATIONS_FILE.read_text())
    calls = {name: [call_shape(c) for c in listed[name]] for name in policies}
    assert least_privilege_problems(policies, calls) == []

    # WHEN it is destroyed (minus what moto cannot delete)
    in_state = terraform.state_list()
    for address in NOT_DESTROYABLE_ON_MOTO:
        assert any(item.startswith(address) for item in in_state), address
        terraform.run("state", "rm", address, timeout=120)
    timings["destroy"] = terraform.destroy(
        "-no-color", "-auto-approve", *variables, timeout=DESTROY_TIMEOUT_SECONDS
    )

    # THEN nothing is left in the state, and the queues are gone from moto
    assert terraform.state_list() == []
    remaining = clients["sqs"].list_queues(QueueNamePrefix="sluice-dev").get("QueueUrls", [])
    assert remaining == []
    print(  # timings for the reader, not asserted
        "terraform against moto: "
        + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in timings.items())
    )
