"""Organizations, channels, templates and tokens, made with the service's own manage.py commands (run through
`call_command` in one `manage.py shell`, so the soak pays Django's start-up once, not thirty times)."""

from __future__ import annotations

import json
import subprocess

from benchmarks.chaos.scenario import LIMITED_LIMIT, LIMITED_ORG, ORGS, TEMPLATE_BODY, TEMPLATES, waba_of
from benchmarks.chaos.stack import PROJECT_ROOT, Stack

SCRIPT = """
import io, json
from django.core.management import call_command

def last_line(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()[-1].strip()

plan = json.loads({plan!r})
made = {{"channels": {{}}, "tokens": {{}}}}
for org, channels in plan["orgs"].items():
    for phone, mps in channels:
        made["channels"][phone] = last_line("create_channel", "--org", org, "--phone-number-id", phone,
            "--waba-id", plan["wabas"][org], "--access-token", "chaos-token-" + phone, "--max-mps", str(mps))
        for name, category in plan["templates"].items():
            last_line("create_template", "--channel", phone, "--name", name, "--language", "es",
                "--body", plan["body"], "--category", category)
    made["tokens"][org] = last_line("create_token", "--org", org, "--scopes", "messages:bulk,webhooks:manage")
last_line("update_organization", "--org", plan["limited"], "--messaging-limit", str(plan["limit"]))
print("CHAOS-SETUP " + json.dumps(made))
"""


def create_objects(stack: Stack) -> dict:
    plan = {
        "orgs": ORGS,
        "wabas": {org: waba_of(org) for org in ORGS},
        "templates": TEMPLATES,
        "body": TEMPLATE_BODY,
        "limited": LIMITED_ORG,
        "limit": LIMITED_LIMIT,
    }
    code = SCRIPT.format(plan=json.dumps(plan))
    done = subprocess.run(
        ["python", "manage.py", "shell", "-c", code],
        cwd=PROJECT_ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    for line in done.stdout.splitlines():
        if line.startswith("CHAOS-SETUP "):
            return json.loads(line[len("CHAOS-SETUP ") :])
    raise RuntimeError(f"setup failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
