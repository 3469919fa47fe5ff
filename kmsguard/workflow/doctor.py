"""`doctor`: walk the troubleshooting table for one environment and report the fixes.

It looks at the keys of the environment's latest run (or the key given): each
key's state, region and policy, and the failed cryptographic calls CloudTrail
shows on it. It also reads which key the listed pipeline resources name,
whether an open run has stayed too long in one state, and which IAM actions
AWS denied to the operator's credentials along the way. Doctor only reads: it
never changes a key, a policy or a run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.doctor_findings import (
    ACCESS_DENIED,
    ERROR,
    INFO,
    KEY_UNUSABLE,
    PARTIAL_ENCRYPTION,
    PERMISSIONS,
    PROBLEMS,
    STUCK_RUN,
    WARNING,
    DoctorFinding,
)
from kmsguard.workflow.doctor_keys import (
    PIPELINE_KEY,
    RETIRED_KEY,
    Examination,
    KeyTarget,
    examine_key,
)
from kmsguard.workflow.doctor_runs import stuck_run
from kmsguard.workflow.errors import InvalidInput, OperationFailed
from kmsguard.workflow.permissions import (
    CallRecorder,
    PermissionReport,
    permission_report,
)
from kmsguard.workflow.records import Environment, Run

if TYPE_CHECKING:
    from kmsguard.workflow.app import App
    from kmsguard.workflow.aws import AwsSession

DEFAULT_LOOKBACK = timedelta(hours=1)
MAX_LOOKBACK = timedelta(days=90)  # the event history LookupEvents keeps


@dataclass
class DoctorReport:
    """Everything doctor found for one environment."""

    environment: Environment
    checked_at: datetime
    since: datetime
    keys: list[KeyTarget]
    findings: list[DoctorFinding]
    walked: set[str]
    permissions: PermissionReport | None = None

    @property
    def needs_action(self) -> bool:
        return any(finding.needs_action for finding in self.findings)

    def problem_status(self) -> dict[str, str]:
        """Return each problem doctor looks for as "found", "not found" or "not checked"."""
        status = {}
        for problem in PROBLEMS:
            if problem not in self.walked:
                # A warning such as "no key known" explains why it was skipped.
                status[problem] = "not checked"
            elif any(f.problem == problem and f.needs_action for f in self.findings):
                status[problem] = "found"
            else:
                status[problem] = "not found"
        return status

    def summary(self) -> str:
        counts = {
            severity: sum(1 for f in self.findings if f.severity == severity)
            for severity in (ERROR, WARNING, INFO)
        }
        return (
            f"{counts[ERROR]} error(s), {counts[WARNING]} warning(s), "
            f"{counts[INFO]} note(s)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment.name,
            "region": self.environment.region,
            "pipeline_account": self.environment.pipeline_account,
            "checked_at": self.checked_at.isoformat(),
            "cloudtrail_since": self.since.isoformat(),
            "ok": not self.needs_action,
            "summary": self.summary(),
            "keys": [target.to_dict() for target in self.keys],
            "problems": self.problem_status(),
            "findings": [finding.to_dict() for finding in self.findings],
            "permissions": self.permissions.to_dict() if self.permissions else None,
        }


def diagnose(
    app: App,
    env_name: str,
    *,
    key: str | None = None,
    principal_form: str | None = None,
    lookback: timedelta = DEFAULT_LOOKBACK,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DoctorReport:
    """Diagnose one environment; read AWS and the store, change nothing.

    Args:
        key: examine this key instead of the keys of the latest run.
        principal_form: how the key policy names the pipeline, "root" or
            "roles"; by default the form the latest apply-policy step used.
        lookback: how far back CloudTrail is read for failed calls.
        sleep: waits between CloudTrail pages; tests pass a fake.

    Raises:
        InvalidInput: unknown environment, malformed key, or a lookback that is
            not positive or longer than 90 days.
    """
    environment = app.environment(env_name)
    _validate_lookback(lookback)
    now = now or datetime.now(UTC)
    runs = app.store.runs(env_name)
    latest = runs[-1] if runs else None
    aws = app.aws()
    report = DoctorReport(environment, now, now - lookback, [], [], set())

    recorder = CallRecorder()
    with recorder.watching(_clients(aws, environment)):
        caller = _caller_arn(aws, environment.region)
        report.keys = _targets(aws, environment, key, latest)
        exam = Examination(
            aws,
            environment,
            principal_form or _applied_form(app, latest),
            report.since,
            now,
            caller,
            sleep,
        )
        _examine_keys(report, exam)

    _check_run(app, report, latest, now)
    _check_permissions(report, recorder, caller)
    return report


def _validate_lookback(lookback: timedelta) -> None:
    if not timedelta() < lookback <= MAX_LOOKBACK:
        raise InvalidInput(
            f"invalid lookback {lookback}: give a period longer than 0 and at most "
            "90 days, the event history CloudTrail LookupEvents keeps"
        )


def _clients(aws: AwsSession, environment: Environment) -> list[Any]:
    """Return the clients whose responses show what the current credentials may do."""
    from kmsguard.workflow.environment_resources import resources_of

    services = ["sts", "kms", "cloudtrail"]
    # Responses to reads made with another profile show nothing about these.
    if resources_of(environment).profile is None:
        services += ["s3", "kinesis", "sqs"]
    return [aws.client(service, environment.region) for service in services]


def _caller_arn(aws: AwsSession, region: str) -> str | None:
    try:
        return aws.caller_identity(region)["Arn"]
    except OperationFailed:
        return None


def _targets(
    aws: AwsSession, environment: Environment, key: str | None, latest: Run | None
) -> list[KeyTarget]:
    if key is not None:
        from kmsguard.workflow.aws import Kms, is_key_arn

        # A key ARN is examined as given, so that a key kmsguard cannot read
        # is reported as a finding; other identifiers must resolve first.
        arn = key if is_key_arn(key) else Kms(aws, environment.region).resolve(key).arn
        return [KeyTarget(arn, PIPELINE_KEY, "given with --key")]
    return keys_of_run(latest) if latest is not None else []


def keys_of_run(run: Run) -> list[KeyTarget]:
    """Return the keys of a run: retired if kmsguard took them out of use."""
    retired = run.data.get("retired_key") if run.data.get("key_retired") else None
    targets = []
    for arn, which in ((run.current_key_arn, "current"), (run.new_key_arn, "new")):
        # The new key of a cancelled run was never handed to the pipeline.
        if not arn or (which == "new" and run.state == "cancelled"):
            continue
        role = RETIRED_KEY if arn == retired else PIPELINE_KEY
        source = f"{which} key of {run.procedure} run {run.id}, state {run.state}"
        targets.append(KeyTarget(arn, role, source))
    return targets


def _applied_form(app: App, run: Run | None) -> str:
    """Return the pipeline principal form the run's apply-policy step used."""
    if run is None:
        return "root"
    for event in reversed(app.store.run_events(run.id)):
        if event.step == "apply_policy" and event.outcome == "applied":
            return str(event.evidence.get("form") or "root")
    return "root"


def _examine_keys(report: DoctorReport, exam: Examination) -> None:
    if not report.keys:
        report.findings.append(
            DoctorFinding(
                WARNING,
                KEY_UNUSABLE,
                "key_known",
                f"no run of {exam.env_name} records a key, so doctor cannot check "
                "the key, its policy or CloudTrail",
                f"run `kmsguard doctor {exam.env_name} --key KEY` with the key the "
                "pipeline uses",
            )
        )
        return
    report.walked |= {KEY_UNUSABLE, ACCESS_DENIED}
    for target in report.keys:
        report.findings += examine_key(exam, target)
    _check_resources(report, exam)


def _check_resources(report: DoctorReport, exam: Examination) -> None:
    from kmsguard.workflow.doctor_resources import resource_findings

    findings = resource_findings(exam, report.keys)
    if findings is None:
        report.findings.append(
            DoctorFinding(
                INFO,
                PARTIAL_ENCRYPTION,
                "resources_listed",
                f"{exam.env_name} lists no pipeline resources, so doctor cannot "
                "tell whether every pipeline stack uses the key",
                f"list them with `kmsguard env set-resources {exam.env_name} "
                "--s3-bucket NAME --kinesis-stream NAME --sqs-queue URL`",
            )
        )
        return
    report.walked.add(PARTIAL_ENCRYPTION)
    report.findings += findings


def _check_run(app: App, report: DoctorReport, run: Run | None, now: datetime) -> None:
    report.walked.add(STUCK_RUN)
    if run is None:
        return
    stuck = stuck_run(run, now)
    next_command = app.engine.next_command(run) if run.closed_at is None else ""
    if stuck is not None:
        report.findings.append(
            DoctorFinding(
                WARNING,
                STUCK_RUN,
                "run_progress",
                stuck.message(),
                f"{stuck.advice()} Next: {next_command or 'see kmsguard status'}",
                f"run {run.id}",
                {"state": run.state, "since": run.updated_at, "next": next_command},
            )
        )
    if run.pending_intent_id is not None and run.closed_at is None:
        report.findings.append(
            DoctorFinding(
                WARNING,
                STUCK_RUN,
                "run_intent",
                f"{run.procedure} run {run.id} has an AWS write (event "
                f"{run.pending_intent_id}) whose outcome was never recorded",
                f"run the next step command, which reconciles it from AWS: "
                f"{next_command or 'see kmsguard status'}",
                f"run {run.id}",
            )
        )


def _check_permissions(
    report: DoctorReport, recorder: CallRecorder, caller: str | None
) -> None:
    from kmsguard.states import PROCEDURES
    from kmsguard.workflow.iam_policy import all_operations

    permissions = permission_report(
        recorder, all_operations(PROCEDURES.values()), caller
    )
    report.permissions = permissions
    report.walked.add(PERMISSIONS)
    principal = caller or "the current credentials"
    for action, response in permissions.denied.items():
        report.findings.append(
            DoctorFinding(
                ERROR,
                PERMISSIONS,
                "permission_denied",
                f"AWS denied {action} to {principal}: {response}",
                f"allow {action} in the IAM policy of {principal} (and in the key policy "
                "for kms: actions); `kmsguard iam-policy` prints every action "
                "kmsguard needs",
                action,
            )
        )
    if permissions.not_tested:
        report.findings.append(
            DoctorFinding(
                INFO,
                PERMISSIONS,
                "permissions_not_tested",
                f"{len(permissions.not_tested)} IAM action(s) were not tested: "
                "doctor learns only from the responses to the read calls it makes, "
                "and kmsguard does not call iam:SimulatePrincipalPolicy. Not "
                f"tested: {', '.join(permissions.not_tested)}",
                "compare the IAM policy of the credentials with `kmsguard iam-policy`",
                principal,
            )
        )
