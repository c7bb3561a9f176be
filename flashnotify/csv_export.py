"""CSV for people to open in a spreadsheet: cells that a spreadsheet would run as a formula are defused.

A cell starting with =, +, -, @, a tab or a carriage return is prefixed with a single quote
(OWASP "CSV injection"): a username `-2+3` or an email `=cmd|'/C calc'!A0@...` is shown as text,
never evaluated. Every CSV the project writes goes through `csv_writer`.
"""

import csv

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """`value` as a cell a spreadsheet shows as text; None is an empty cell, numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SafeWriter:
    """csv.writer's interface, every cell passed through `csv_cell`."""

    def __init__(self, stream, **kwargs):
        self._writer = csv.writer(stream, **kwargs)

    def writerow(self, row):
        return self._writer.writerow([csv_cell(value) for value in row])

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)


def csv_writer(stream, **kwargs):
    return SafeWriter(stream, **kwargs)
