"""A local stand-in for Slack and a CRM: prints every POST it receives, answers 200.

Used by the local `listen` loop in README.md and docs/listen.md. Loopback only.
"""
import http.server as h


class StandIn(h.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        print(self.path, body, flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    h.HTTPServer(("127.0.0.1", 9999), StandIn).serve_forever()
