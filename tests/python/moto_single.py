"""moto's S3 server in one thread, one connection at a time. moto_server runs werkzeug threaded, and then two
conditional PUTs (If-None-Match: *) can both succeed; one thread makes them atomic, which the
Delta commit protocol and opslake's lock rely on. Usage: moto_single.py PORT"""

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler
from werkzeug.serving import run_simple

class OneAtATime(MotoRequestHandler):
    # With keep-alive, one idle client connection would hold the only thread while every
    # other connection waits: answer each request on its own connection.
    protocol_version = "HTTP/1.0"


if __name__ == "__main__":
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=False, request_handler=OneAtATime)
