"""The ``sse`` connector (Server-Sent Events client): see http_sources."""

from caudal.connectors.http_sources import SseSource

SOURCE = SseSource
