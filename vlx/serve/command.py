"""``vlx serve``: the local demo page (this package) for the three tasks' models.

Everything is checked before the server starts: the extra is installed, the options, the
address can be bound, every model loads. The web framework is imported here, not by the
parser, so ``vlx --help`` stays quick and the extra stays optional.
"""

from __future__ import annotations

import argparse
import socket
import sys

from vlx.commands.textual import check_probe
from vlx.devices import resolve_device
from vlx.errors import InputError

MISSING_EXTRA = "vlx serve needs the serve extra: pip install -e '.[serve]'"


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        print(MISSING_EXTRA, file=sys.stderr)
        return 2
    from vlx.serve.app import create_app
    from vlx.serve.session import Demo
    from vlx.tasks.loading import DEFAULTS, load_task

    models = {**DEFAULTS, **dict(_model(text) for text in args.model)}
    if args.max_upload <= 0:
        raise InputError(f"--max-upload must be a positive number of MB, got {args.max_upload:g}")
    check_probe(args)
    device = resolve_device(args.device)
    listening = listen(args.host, args.port)
    try:
        tasks = {kind: load_task(kind, name, device) for kind, name in models.items()}
        app = create_app(Demo(tasks, models, args.probe, args.probe_images),
                         int(args.max_upload * 2**20))
        host, port = listening.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"vlx serve: http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        server.run(sockets=[listening])
    finally:
        listening.close()
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: any free one), so a taken port or a host that
    is not this machine's is said before the models load."""
    if not 0 <= port <= 65535:
        raise InputError(f"--port {port} is out of range; valid: 0..65535 (0: any free port)")
    listening = None
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listening = socket.socket(family, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(128)
    except OSError as err:
        if listening is not None:
            listening.close()
        raise InputError(f"cannot listen on {host}:{port}: {err.strerror or err}; choose "
                         "another --host or --port") from None
    return listening


def _model(text: str) -> tuple[str, str]:
    """``TASK=NAME`` -> (task, name)."""
    from vlx.tasks.loading import KINDS

    kind, _, name = text.partition("=")
    if kind not in KINDS or not name:
        raise InputError(f"--model {text!r}: give TASK=NAME with TASK one of {', '.join(KINDS)}, "
                         "e.g. caption=hf:./blip-caption")
    return kind, name
