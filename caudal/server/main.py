"""``caudal serve``: check the bind address against the token, then run the ASGI app."""

from __future__ import annotations

import ipaddress
import os
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
    try:
        infos = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)
    except OSError:
        raise CaudalError(f"--host {args.host}: unknown host") from None
    if not is_loopback(args.host) and not token and not args.insecure:
        raise CaudalError(f"--host {args.host} is reachable from other machines and no "
                          f"--token is set", hint="give --token (or CAUDAL_TOKEN), or "
                                                  "--insecure to serve without one")
    state_dir = Path(args.state_dir).resolve()
    lock = _lock_state_dir(state_dir)  # held (open) while this server runs
    # bound here, before the app starts its pipelines: a port in use is one line, and no
    # pipeline is started by a server that cannot serve
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise CaudalError(f"cannot listen on {args.host}:{args.port} ({e.strerror})",
                          hint="another process has the port: give another --port") from None
    app = create_app(state_dir, token)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address
    print(f"caudal: serving on http://{host}:{args.port} (state in {state_dir}"
          f"{', token required' if token else ''})", file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        lock.close()
    return 0


def _lock_state_dir(state_dir: Path):
    """One server per state dir: a second one would start its own process for a pipeline
    whose process the first one replaced (two jobs on one checkpoint directory). The lock
    ends with the process, however it ends (the pipelines a killed server left running are
    waited for by the next one)."""
    import fcntl

    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        f = open(state_dir / "server.lock", "a+")
    except OSError as e:
        raise CaudalError(f"--state-dir {state_dir}: cannot use it as a directory "
                          f"({e.strerror})", hint="give a directory this user may write")\
            from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip()
        f.close()
        raise CaudalError(f"another caudal serve{f' (pid {holder})' if holder else ''} uses "
                          f"--state-dir {state_dir}",
                          hint="stop it, or give another --state-dir") from None
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f
