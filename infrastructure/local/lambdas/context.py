"""A Lambda context for invoking handlers outside Lambda: tests, the demo, the local runtime."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from infrastructure.names import LIVE_ALIAS


@dataclass
class LocalLambdaContext:
    function_name: str
    timeout_seconds: float = 30.0
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    region: str = "eu-west-2"
    account_id: str = "123456789012"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        function = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"
        return f"{function}:{LIVE_ALIAS}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self._started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))
