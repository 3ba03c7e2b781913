"""The policy layer: YAML policies, the engine that applies them, and the Decision it returns.

Importing this package loads no torch, transformers, diffusers or spaCy.
"""

from safetext.policy.decision import Action, Decision, Span
from safetext.policy.engine import PolicyEngine
from safetext.policy.loader import PolicyError, load_policy, policies_dir, resolve_policy_path
from safetext.policy.schema import Category, ClassifierConfig, Normalization, Policy, Scope, Term

__all__ = [
    "Action",
    "Category",
    "ClassifierConfig",
    "Decision",
    "Normalization",
    "Policy",
    "PolicyEngine",
    "PolicyError",
    "Scope",
    "Span",
    "Term",
    "load_policy",
    "policies_dir",
    "resolve_policy_path",
]
