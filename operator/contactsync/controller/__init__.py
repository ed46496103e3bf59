"""The operator: Kopf handlers (thin) over pure desired-state builders and
idempotent appliers for Kubernetes and Prefect."""
