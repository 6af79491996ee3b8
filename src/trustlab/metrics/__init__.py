"""The metrics engine: confusion counts once, every metric derived from them."""

from trustlab.metrics.audit import AuditResult, audit
from trustlab.metrics.stream import audit_table

__all__ = ["AuditResult", "audit", "audit_table"]
