"""The record of one scan: a self-contained HTML or Markdown report, and the scan's JSON document.

`gather` collects what the inventory and the audit log hold about a scan; `documents` renders it with Jinja2
templates and matplotlib plots; `scan_json` builds the documented JSON (`otprobe/data/scan.schema.json`). Jinja2
and matplotlib are imported only here, when a report is written: `otprobe --help` stays fast.
"""
