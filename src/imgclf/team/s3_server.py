"""moto's standalone S3 server (`moto_server`), serving one request at a time.

moto's request recorder — the local bucket's persistence — appends one JSON line per request from
whichever thread served it; the threaded `moto_server` lets concurrent requests (boto3 uploads the
parts of a multipart upload in parallel) interleave their lines and corrupt the file. One thread
keeps every line whole. Run as `python -m imgclf.team.s3_server HOST PORT`.
"""

from __future__ import annotations

import signal
import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def main(argv: list[str]) -> None:
    host, port = argv[0], int(argv[1])
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    run_simple(host, port, DomainDispatcherApplication(create_backend_app), threaded=False,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main(sys.argv[1:])
