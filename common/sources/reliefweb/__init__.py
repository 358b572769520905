"""ReliefWeb: humanitarian reports and disasters, fetched incrementally on ``date.changed``."""

from common.sources.reliefweb.client import fetch_pages, page_query, refused_appname
from common.sources.reliefweb.params import APPNAME_ENV, INDEX_LAG, ReliefWebParams, cursor_name, cursor_str, windows
from common.sources.reliefweb.parse import DISASTERS, FIELDS, REPORTS, page_items, parse_pages, to_record
from common.sources.reliefweb.source import ReliefWeb

__all__ = [
    "APPNAME_ENV",
    "DISASTERS",
    "FIELDS",
    "INDEX_LAG",
    "REPORTS",
    "ReliefWeb",
    "ReliefWebParams",
    "cursor_name",
    "cursor_str",
    "fetch_pages",
    "page_items",
    "page_query",
    "parse_pages",
    "refused_appname",
    "to_record",
    "windows",
]
