"""The cluster's own Kubernetes API: credentials from ARM, a small client wrapper, the per-node symptom.

Nothing here imports the `kubernetes` package at module level (Functions cold start, `analyze`); the
client is imported on first use, like the Azure SDKs.
"""
