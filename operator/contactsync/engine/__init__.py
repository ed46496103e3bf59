"""The sync engine: plain library code, no Kubernetes imports."""
