"""Each procedure's states, steps and guard names, as data."""

from kmsguard.states.disablement import DISABLEMENT
from kmsguard.states.onboarding import ONBOARDING
from kmsguard.states.rotation import ROTATION
from kmsguard.workflow.procedure import Procedure

PROCEDURES: dict[str, Procedure] = {
    procedure.name: procedure for procedure in (ONBOARDING, ROTATION, DISABLEMENT)
}
