"""The ceiling: a bare WSGI callable that answers /ping and echoes /invocations.

It parses and re-encodes the JSON body, as any echo handler must, and does
nothing else: no routing framework, no task registry, no logging.
"""

import argparse
import json
import time

_STARTED = int(time.time())


def _json(start_response, status, value):
    body = json.dumps(value).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    if path == "/ping" and method == "GET":
        return _json(
            start_response, "200 OK", {"status": "Healthy", "time_of_last_update": _STARTED}
        )
    if path == "/invocations" and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        payload = json.loads(environ["wsgi.input"].read(length))
        return _json(start_response, "200 OK", payload)
    return _json(start_response, "404 Not Found", {"error": "Not Found"})


if __name__ == "__main__":
    import waitress

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    waitress.serve(app, host="127.0.0.1", port=args.port, threads=args.threads)
