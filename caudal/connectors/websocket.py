"""The ``websocket`` connector (a WebSocket client source): see http_sources."""

from caudal.connectors.http_sources import WebsocketSource

SOURCE = WebsocketSource
