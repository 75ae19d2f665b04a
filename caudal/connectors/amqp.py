"""An AMQP 0-9-1 connection (pika) to RabbitMQ, shared by the queue connector (``rabbitmq``)
and the stream source (``rabbitmq_stream``), which asks the broker over AMQP whether a stream
holds messages: one place for the default URL and for how a connection is retried."""

from __future__ import annotations

from typing import Any

from caudal.connectors import messages as mx
from caudal.errors import ConfigError
from caudal.plan.tables import TableSpec

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def connect(table: TableSpec) -> Any:
    """A blocking pika connection to the table's url, retried a bounded number of times."""
    import pika
    import pika.exceptions

    raw = table.options.get("url", DEFAULT_URL)
    try:
        params = pika.URLParameters(raw)
    except Exception:  # noqa: BLE001 - pika's own parse errors run on
        raise ConfigError(f"url = {raw!r} of table {table.name!r}", line=table.line,
                          hint="amqp://user:password@host:port/vhost") from None
    params.socket_timeout = 5
    params.blocked_connection_timeout = 60
    params.connection_attempts = 1
    shown = f"{params.host}:{params.port}"
    return mx.retrying(table, shown, "connecting", lambda: pika.BlockingConnection(params),
                       (pika.exceptions.AMQPError, OSError))
