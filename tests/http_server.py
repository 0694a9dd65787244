"""The loopback HTTP server of the tests' and benchmarks' receivers (customer endpoints, the demo's): Python's
ThreadingHTTPServer with a listen backlog of 128 instead of its 5, so a worker's burst of concurrent POSTs is
accepted rather than dropped into the client's 1 s SYN retry (which made the receiver, not the service, the pace)."""

import sys
from http.server import ThreadingHTTPServer


class ReceiverServer(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that hung up (a killed process, a timed-out attempt) is no error of the receiver's; anything
        else is printed as the standard library does."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)
