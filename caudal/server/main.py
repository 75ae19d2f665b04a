"""``caudal serve``: check the bind address against the token, then run the ASGI app."""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

from caudal.errors import CaudalError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def serve(args) -> int:
    try:
        import uvicorn

        from caudal.server.app import create_app
    except ImportError as e:
        raise CaudalError(f"caudal serve needs the server extra ({e.name} is missing)",
                          hint="pip install 'caudal[server]'") from None
    if not 0 < args.port < 65536:
        raise CaudalError(f"--port {args.port}: not a port (1-65535)")
    token = args.token or None
    if not is_loopback(args.host) and not token and not args.insecure:
        raise CaudalError(f"--host {args.host} is reachable from other machines and no "
                          f"--token is set", hint="give --token (or CAUDAL_TOKEN), or "
                                                  "--insecure to serve without one")
    state_dir = Path(args.state_dir).resolve()
    app = create_app(state_dir, token)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    try:
        socket.getaddrinfo(args.host, args.port)
    except OSError:
        raise CaudalError(f"--host {args.host}: unknown host") from None
    print(f"caudal: serving on http://{args.host}:{args.port} (state in {state_dir}"
          f"{', token required' if token else ''})", file=sys.stderr, flush=True)
    server.run()
    if not server.started:
        raise CaudalError(f"cannot listen on {args.host}:{args.port} (in use?)")
    return 0
