"""The shipped word policies, carried in the wheel as the data package ``safetext.policies``.

Policy names resolve against this folder after the current folder: see
``safetext.policy.resolve_policy_path``.
"""
