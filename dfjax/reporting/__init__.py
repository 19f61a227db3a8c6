"""Tables and plots derived from the results store."""

from dfjax.reporting.report import write_report
from dfjax.reporting.tables import flat_rows

__all__ = ["flat_rows", "write_report"]
