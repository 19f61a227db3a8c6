"""Tables and plots derived from the results store."""

from dfjax.reporting.tables import flat_rows, write_report

__all__ = ["flat_rows", "write_report"]
