"""The library's front door: one object per invocation, used by the CLI and tests."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.errors import InvalidInput, unknown_environment
from kmsguard.workflow.records import Environment, NewEvent, utc_now
from kmsguard.workflow.store import SqliteStore

if TYPE_CHECKING:
    # The engine pulls in the state machines and the step handlers; commands
    # that only read (status, history, audit verify) never import it.
    from kmsguard.workflow.audit_export import AuditExport
    from kmsguard.workflow.aws import AwsSession
    from kmsguard.workflow.context import StepContext
    from kmsguard.workflow.engine import Engine, StepResult
    from kmsguard.workflow.procedure import Procedure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """Global options: where the database is, who operates, how to reach AWS."""

    db_path: Path
    operator: str
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None


class App:
    """Environments, runs and audit for one database and one operator."""

    def __init__(self, settings: Settings, aws: AwsSession | None = None) -> None:
        self.settings = settings
        self._aws = aws
        self._store: SqliteStore | None = None

    @property
    def store(self) -> SqliteStore:
        if self._store is None:
            self._store = SqliteStore(self.settings.db_path)
        return self._store

    def aws(self) -> AwsSession:
        if self._aws is None:
            from kmsguard.workflow.aws import AwsSession, AwsSettings

            self._aws = AwsSession(
                AwsSettings(self.settings.profile, self.settings.endpoint_url)
            )
        return self._aws

    @property
    def engine(self) -> Engine:
        from kmsguard.workflow.engine import Engine

        return Engine(self.store, self.aws, self.settings.operator)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # Environments

    def add_environment(
        self, name: str, region: str, pipeline_account: str
    ) -> Environment:
        from kmsguard.workflow.identifiers import (
            validate_account,
            validate_environment_name,
            validate_region,
        )

        environment = Environment(
            name=validate_environment_name(name),
            region=validate_region(region),
            pipeline_account=validate_account(pipeline_account),
            resources={},
            created_at=utc_now(),
            created_by=self.settings.operator,
        )
        event = NewEvent(
            step="env_add",
            outcome="recorded",
            operator=self.settings.operator,
            message=f"environment {name} added",
            evidence=environment.to_dict(),
        )
        self.store.add_environment(environment, event)
        log.info("added environment %s by %s", name, self.settings.operator)
        return environment

    def require_database(self) -> None:
        """Raise InvalidInput when the database file does not exist yet.

        Without this, a command that only reads would create an empty
        database at a mistyped --db path and report that nothing is there.
        """
        path = self.settings.db_path
        if self._store is None and not path.exists():
            raise InvalidInput(
                f"no kmsguard database at {str(path)!r}: check --db or KMSGUARD_DB, "
                "or create one by adding an environment: `kmsguard env add ENV "
                "--region REGION --pipeline-account ACCOUNT_ID`"
            )

    def environment(self, name: str) -> Environment:
        """Return a registered environment.

        Raises:
            InvalidInput: no database, or no environment has that name.
        """
        self.require_database()
        found = self.store.get_environment(name)
        if found is None:
            known = [environment.name for environment in self.environments()]
            raise unknown_environment(name, known)
        return found

    def environments(self) -> list[Environment]:
        self.require_database()
        return self.store.list_environments()

    # Procedures

    def check_region(self, environment: str) -> None:
        """Reject a --region that differs from the environment's region."""
        env = self.environment(environment)
        if self.settings.region and self.settings.region != env.region:
            raise InvalidInput(
                f"--region {self.settings.region} differs from the region "
                f"{env.region} of environment {environment!r}; key operations always "
                "use the environment's region, so drop --region or KMSGUARD_REGION"
            )

    def start(
        self, procedure: Procedure, environment: str, params: dict[str, Any]
    ) -> StepResult:
        self.check_region(environment)
        return self.engine.start(procedure, environment, params)

    def step(
        self,
        procedure: Procedure,
        step: str,
        environment: str,
        params: dict[str, Any],
        confirm: Callable[[StepContext], bool] | None = None,
    ) -> StepResult:
        self.check_region(environment)
        return self.engine.step(procedure, step, environment, params, confirm)

    # Reading

    def status(
        self, environment: str | None = None, live: bool = False
    ) -> list[dict[str, Any]]:
        """Return each environment with its open run, state age and next command.

        Plain status reads only the database. With `live`, each open run's keys
        are read from AWS and compared with the run (see workflow.drift).
        """
        from kmsguard.workflow.status_view import status_rows

        self.require_database()
        if environment is not None:
            self.environment(environment)
        rows = status_rows(self.store.conn, environment)
        if live:
            from kmsguard.workflow.drift import live_status

            live_status(self, rows)
        return rows

    def history(self, environment: str) -> list[dict[str, Any]]:
        self.environment(environment)
        return [event.to_dict() for event in self.store.environment_events(environment)]

    def verify(self) -> dict[str, Any]:
        """Check the whole audit chain, then every run; report the first bad row."""
        from kmsguard.workflow.audit import verify_audit

        self.require_database()
        return verify_audit(self.store)

    def export_audit(self, environment: str, fmt: str) -> AuditExport:
        """Render every audit event of an environment, with the chain check.

        Raises:
            InvalidInput: an unknown environment or format.
        """
        from kmsguard.workflow.audit_export import export_audit

        self.environment(environment)
        verification = self.verify()
        return export_audit(
            self.store, environment, fmt, verification, self.settings.operator
        )
