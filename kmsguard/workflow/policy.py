"""KMS key policies for the pipeline: render, parse, analyse, evaluate, protect.

Pure functions on JSON documents (dicts as json.loads returns them). Nothing here
calls AWS or touches the database. The work is split by concept:

- policy_grammar: parsing and grammar validation, with JSON paths in errors
- policy_render: the policy kmsguard applies, and merging it into a current one
- policy_analysis, policy_principals and policy_key_root: findings for one
  environment
- policy_eval: the evaluator that decides a request under a key policy alone
- policy_protect: the Deny statement that guards a key while a procedure is open
- policy_compare: canonical JSON, diff and comparison by meaning
- policy_conditions, policy_glob and policy_actions: condition operators, IAM
  wildcard matching and KMS action names, shared by the modules above
"""

from __future__ import annotations

from kmsguard.workflow.policy_actions import (
    KEY_ADMIN_ACTIONS,
    KMS_OPERATIONS,
    PIPELINE_GRANT_ACTIONS,
    PIPELINE_USE_ACTIONS,
    expand_actions,
)
from kmsguard.workflow.policy_analysis import (
    analyse_policy,
    pipeline_subjects,
    policy_errors,
    policy_warnings,
)
from kmsguard.workflow.policy_compare import (
    canonical_json,
    diff_policies,
    normal_statement,
    same_statements,
)
from kmsguard.workflow.policy_eval import (
    ALLOW,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    evaluate,
)
from kmsguard.workflow.policy_grammar import (
    MAX_POLICY_BYTES,
    PolicyDocumentError,
    parse_policy_text,
    statement_label,
    statement_list,
    validate_policy,
)
from kmsguard.workflow.policy_principals import (
    ERROR,
    POLICY_SCOPE,
    WARNING,
    Finding,
)
from kmsguard.workflow.policy_protect import (
    PROTECTED_ACTIONS,
    PROTECTION_SID,
    add_protection,
    narrow_protection,
    protection_actions,
    protection_statement,
    remove_protection,
)
from kmsguard.workflow.policy_render import (
    ADMIN_SID,
    PIPELINE_GRANTS_SID,
    PIPELINE_ROLE_PATTERNS,
    PIPELINE_USE_SID,
    PRINCIPAL_FORMS,
    RENDERED_SIDS,
    ROOT_SID,
    is_account_root_statement,
    merge_policy,
    pipeline_role_arns,
    render_key_policy,
)

__all__ = [
    "ADMIN_SID",
    "ALLOW",
    "ERROR",
    "EXPLICIT_DENY",
    "IMPLICIT_DENY",
    "KEY_ADMIN_ACTIONS",
    "KMS_OPERATIONS",
    "MAX_POLICY_BYTES",
    "PIPELINE_GRANTS_SID",
    "PIPELINE_GRANT_ACTIONS",
    "PIPELINE_ROLE_PATTERNS",
    "PIPELINE_USE_ACTIONS",
    "PIPELINE_USE_SID",
    "POLICY_SCOPE",
    "PRINCIPAL_FORMS",
    "PROTECTED_ACTIONS",
    "PROTECTION_SID",
    "RENDERED_SIDS",
    "ROOT_SID",
    "WARNING",
    "Finding",
    "PolicyDocumentError",
    "add_protection",
    "analyse_policy",
    "canonical_json",
    "diff_policies",
    "evaluate",
    "expand_actions",
    "is_account_root_statement",
    "merge_policy",
    "narrow_protection",
    "normal_statement",
    "parse_policy_text",
    "pipeline_role_arns",
    "pipeline_subjects",
    "policy_errors",
    "policy_warnings",
    "protection_actions",
    "protection_statement",
    "remove_protection",
    "render_key_policy",
    "same_statements",
    "statement_label",
    "statement_list",
    "validate_policy",
]
