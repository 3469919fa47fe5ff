"""AWS faults explained: who was denied what, which key state a call needs.

`aws.describe_error` uses these explanations for every AWS error. The engine
adds the part that only a step can tell: the state the step needs its key in.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from kmsguard.workflow.errors import KmsguardError, OperationFailed

if TYPE_CHECKING:
    from kmsguard.workflow.context import StepContext

log = logging.getLogger(__name__)

# The form of AWS's AccessDenied messages, for example "User:
# arn:aws:sts::111122223333:assumed-role/ops/alice is not authorized to
# perform: kms:DisableKey on resource: arn:aws:kms:... because ...".
DENIED_RE = re.compile(
    r"User: (?P<principal>\S+) is not authorized to perform: (?P<action>[\w:*]+)"
    r"(?: on resource: (?P<resource>[^\s,]+))?"
)

# Fixes for errors botocore raises without an AWS response, by exception class.
CLIENT_SIDE_HINTS = {
    "EndpointConnectionError": (
        "the AWS endpoint could not be reached; check --endpoint-url, "
        "AWS_ENDPOINT_URL and any AWS_ENDPOINT_URL_<SERVICE> variable (it takes "
        "precedence for its service), the network and any proxy, then run the "
        "command again"
    ),
    "ConnectTimeoutError": (
        "connecting to the AWS endpoint timed out; check --endpoint-url, the "
        "network and any proxy, then run the command again"
    ),
    "ReadTimeoutError": (
        "the AWS response timed out; run the command again. After a step that "
        "changes a key, `kmsguard status ENV --live` first shows whether the "
        "change took effect"
    ),
    "ProxyConnectionError": "the proxy could not be reached; check HTTPS_PROXY",
    "SSLError": "the TLS connection failed; check the endpoint URL and AWS_CA_BUNDLE",
    "NoCredentialsError": (
        "no AWS credentials were found; give --profile, or set AWS_PROFILE or "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    ),
    "PartialCredentialsError": (
        "the AWS credentials are incomplete; check the profile or the "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY variables"
    ),
    "CredentialRetrievalError": (
        "the credentials of the profile could not be loaded; check --profile "
        "and its credential_process or role settings"
    ),
    "NoRegionError": "no region is set; give the environment's region",
}


def access_denied_text(
    message: str, action: str, target: str, caller_arn: str | None
) -> str:
    """Explain an AccessDenied error: the action, the resource and the principal.

    The principal, action and resource come from AWS's message when it names
    them; otherwise from the call and the caller identity kmsguard read.
    """
    match = DENIED_RE.search(message)
    principal = match.group("principal") if match else None
    principal = principal or caller_arn
    denied_principal = (
        f"principal {principal}" if principal else "the principal of your credentials"
    )
    denied_action = match.group("action") if match else action
    resource = (match.group("resource") if match else None) or target
    return (
        f"AWS denied {denied_action} on {resource} to {denied_principal}. "
        f"Fix: allow {denied_action} for {denied_principal} in the key policy of "
        f"{resource} and in the principal's IAM policies (an explicit Deny in "
        "either one wins), or run with --profile for a principal that is allowed"
    )


def client_side_hint(exc: Exception) -> str:
    """Return the fix for an error botocore raised without an AWS response, or ""."""
    for kind in type(exc).__mro__:
        hint = CLIENT_SIDE_HINTS.get(kind.__name__)
        if hint:
            return hint
    return ""


@contextmanager
def botocore_errors_as_failures(action: str, target: str) -> Iterator[None]:
    """Turn any botocore exception raised in the block into OperationFailed.

    Handlers wrap their AWS calls in `AwsSession.calling`. This is the net
    for a call that was not wrapped, so the command still ends with a message
    and an exit status instead of a traceback. The exception's module name is
    checked instead of importing botocore, so steps without AWS do not load it.
    """
    try:
        yield
    except KmsguardError:
        raise
    except Exception as exc:
        if not type(exc).__module__.startswith("botocore"):
            raise
        from kmsguard.workflow.aws import describe_error

        raise describe_error(exc, action, target) from exc


def explain_step_failure(ctx: StepContext, error: KmsguardError) -> KmsguardError:
    """Add the key's state and the state the step needs to a key-state error.

    A KMSInvalidStateException message states only that the key's state does
    not allow the call, so the key is read again (DescribeKey) to name its state.
    """
    if getattr(error, "aws_code", "") != "KMSInvalidStateException":
        return error
    assert ctx.run is not None
    key_arn = ctx.target_key()
    try:
        state = ctx.kms.describe(key_arn).state
    except KmsguardError as exc:
        log.warning("could not read the state of key %s: %s", key_arn, exc)
        return error
    needed = " or ".join(
        ctx.procedure.expected_key_states(ctx.run.state, ctx.step.target)
    )
    if not needed:
        needed = "a state that allows the call"
    explained = OperationFailed(
        f"{error}. Key {key_arn} reads {state}, but {ctx.procedure.name} "
        f"{ctx.step.command} needs it {needed}; the run stays in "
        f"{ctx.run.state}. See `kmsguard status {ctx.env_name} --live` for the "
        "command that restores the key's state"
    )
    explained.aws_code = "KMSInvalidStateException"  # type: ignore[attr-defined]
    return explained
