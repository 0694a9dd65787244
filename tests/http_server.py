"""The loopback HTTP server of the tests' and benchmarks' receivers (customer endpoints, the demo's): Python's
ThreadingHTTPServer with a listen backlog of 128 instead of its 5, so a worker's burst of concurrent POSTs is
accepted rather than dropped into the client's 1 s SYN retry (which made the receiver, not the service, the pace)."""

from http.server import ThreadingHTTPServer


class ReceiverServer(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True
