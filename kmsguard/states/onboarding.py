"""Onboarding: bring the pipeline onto a key the customer owns.

The order follows the vendor's setup steps: create the key, give the pipeline
account its key policy, share the key with support, record that support
applied the configuration, then verify that the pipeline uses the key. No step
disables a key, so a run can be cancelled from any state before it completes.
"""

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
        Step(
            name="new_key",
            command="new-key",
            sources=("started",),
            dest="key_ready",
            handler="new_key",
            guards=(
                "key_spec",
                "key_usage",
                "key_origin",
                "key_single_region",
                "key_region",
                "key_enabled",
                "key_customer_managed",
                "key_owner",
            ),
            usage="--create",
            target="new",
        ),
        Step(
            name="apply_policy",
            command="apply-policy",
            sources=("key_ready",),
            dest="policy_applied",
            handler="apply_policy",
            guards=("policy_checks_pass",),
            target="new",
        ),
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
        Step(
            name="confirm",
            command="confirm",
            sources=("shared_with_support",),
            dest="configured",
            handler="record_confirmation",
            guards=("ticket_matches", "confirmation_after_contact"),
            usage="--ticket ID --confirmed-by NAME",
        ),
        Step(
            name="verify",
            command="verify",
            sources=("configured",),
            dest="verified",
            handler="verify_onboarding",
            guards=("pipeline_use_seen", "resources_name_key"),
            target="new",
        ),
        Step(
            name="complete",
            command="complete",
            sources=("verified",),
            dest="completed",
            handler="complete",
            close=True,
        ),
        Step(
            name="cancel",
            command="cancel",
            sources=BEFORE_COMPLETE,
            dest="cancelled",
            handler="cancel",
            usage="--reason TEXT",
            close=True,
        ),
    ),
    waiting_state="shared_with_support",
    confirmed_states=("configured", "verified", "completed"),
    # The key the pipeline is brought onto must stay usable.
    key_expectations=(KeyExpectation("new", BEFORE_COMPLETE[1:], ("Enabled",)),),
)
