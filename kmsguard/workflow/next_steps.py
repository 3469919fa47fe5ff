"""The command that moves a run on from each state. Generated: do not edit.

scripts/gen_docs.py writes this file from kmsguard.states (run `make docs`),
and a test fails when it differs. `kmsguard status` reads these tables so that
it need not import the procedures, which cost more start-up time than the
whole status query. Each entry is (command group and name, usage).
"""

FORWARD: dict[str, dict[str, tuple[str, str]]] = {
    "onboarding": {
        "started": ("onboarding new-key", "--create"),
        "key_ready": ("onboarding apply-policy", ""),
        "policy_applied": ("onboarding share", "--ticket ID"),
        "shared_with_support": ("onboarding confirm", "--ticket ID --confirmed-by NAME"),
        "configured": ("onboarding verify", ""),
        "verified": ("onboarding complete", ""),
    },
    "rotation": {
        "started": ("rotation new-key", "--create"),
        "new_key_ready": ("rotation apply-policy", ""),
        "policy_applied": ("rotation contact-support", "--ticket ID"),
        "support_contacted": ("rotation confirm", "--ticket ID --confirmed-by NAME"),
        "rotation_confirmed": ("rotation disable-old-key", ""),
        "old_key_disabled": ("rotation schedule-deletion", "--window-days 30"),
        "old_key_deletion_scheduled": ("rotation complete", ""),
    },
    "disablement": {
        "started": ("disablement request-removal", "--ticket ID"),
        "removal_requested": ("disablement confirm", "--ticket ID --confirmed-by NAME"),
        "removal_confirmed": ("disablement disable-key", ""),
        "key_disabled": ("disablement schedule-deletion", "--window-days 30"),
        "key_deletion_scheduled": ("disablement complete", ""),
    },
}
RECOVERY: dict[str, dict[str, tuple[str, str]]] = {
    "onboarding": {},
    "rotation": {
        "old_key_disabled": ("recover re-enable", ""),
        "completed": ("recover re-enable", ""),
        "old_key_deletion_scheduled": ("recover cancel-deletion", ""),
    },
    "disablement": {
        "key_disabled": ("recover re-enable", ""),
        "completed": ("recover re-enable", ""),
        "key_deletion_scheduled": ("recover cancel-deletion", ""),
    },
}
RECOVERY_STEPS: dict[str, tuple[str, ...]] = {
    "onboarding": (),
    "rotation": ("cancel_deletion", "cancel_deletion_and_enable", "re_enable"),
    "disablement": ("cancel_deletion", "cancel_deletion_and_enable", "re_enable"),
}
