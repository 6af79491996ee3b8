"""The metrics engine: confusion counts once, every metric derived from them."""

from trustlab.metrics.audit import AuditResult, audit

__all__ = ["AuditResult", "audit"]
