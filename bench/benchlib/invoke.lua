-- wrk script: POST a small JSON payload to /invocations (figure 2).
wrk.method = "POST"
wrk.body = '{"prompt": "Hello, agent!", "session": "bench", "turn": 1}'
wrk.headers["Content-Type"] = "application/json"
