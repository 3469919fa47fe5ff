"""Onboarding: bring the pipeline onto a key the customer owns.

The order follows the vendor's setup steps: create the key, give the pipeline
account its key policy, share the key with support, record that support
applied the configuration, then verify that the pipeline uses the key. No step
disables a key, so a run can be cancelled from any state before it completes.
"""

from kmsguard.states.common_steps import (
    apply_policy_step,
    cancel_step,
    complete_step,
    confirm_step,
    new_key_step,
)
from kmsguard.workflow.procedure import KeyExpectation, Procedure, Step

BEFORE_COMPLETE = (
    "started",
    "key_ready",
    "policy_applied",
    "shared_with_support",
    "configured",
    "verified",
)

ONBOARDING = Procedure(
    name="onboarding",
    title="Onboarding a customer managed key",
    states=(*BEFORE_COMPLETE, "completed", "cancelled"),
    start=Step(
        name="start",
        command="start",
        sources=(),
        dest="started",
        handler="open_run",
    ),
    steps=(
        new_key_step(source="started", dest="key_ready"),
        apply_policy_step(source="key_ready"),
        Step(
            name="share",
            command="share",
            sources=("policy_applied",),
            dest="shared_with_support",
            handler="share_key",
            usage="--ticket ID",
            target="new",
            request="onboarding",
        ),
        confirm_step(source="shared_with_support", dest="configured"),
        Step(
            name="verify",
            command="verify",
            sources=("configured",),
            dest="verified",
            handler="verify_onboarding",
            guards=("pipeline_use_seen", "resources_name_key"),
            target="new",
        ),
        complete_step(sources=("verified",)),
        cancel_step(sources=BEFORE_COMPLETE),
    ),
    waiting_state="shared_with_support",
    confirmed_states=("configured", "verified", "completed"),
    # The key the pipeline is brought onto must stay usable.
    key_expectations=(KeyExpectation("new", BEFORE_COMPLETE[1:], ("Enabled",)),),
)
