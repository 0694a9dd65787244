"""Local WhatsApp Graph API sandbox: `python -m sandbox --port 8099` (see docs/sandbox.md).

A fake of Meta for development, tests and benchmarks, not production code. Importing this package must stay cheap
and free of Django: the sandbox runs without settings, and imports no app of ours.

    state.py         the config and everything the fake Meta remembers (the arrival log, scripts, rate windows)
    outcomes.py      scripted outcomes (error injection): `ok`, `error:<code>`, `http500`, `hang`, `drop`, ...
    meta_errors.py   Meta's error codes, messages and envelopes, as the sandbox answers them
    catalogue.py     the default message templates
    graph_routes.py  the Graph API: POST /{version}/{phone_number_id}/messages, GET .../message_templates
    webhooks.py      signed delivered/read/failed status webhooks posted back
    control.py       the control API (/_sandbox/...) that tests and benchmarks drive
    app.py           assembly into an aiohttp app, and `run` (uvloop, gc freeze)
    process.py       `start_sandbox(...)`: the sandbox as a subprocess, with a client of its control API
    load.py          `python -m sandbox.load`: a load generator
"""
