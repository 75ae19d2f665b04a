"""The ``polling_http`` connector: see http_sources."""

from caudal.connectors.http_sources import PollingHttpSource

SOURCE = PollingHttpSource
