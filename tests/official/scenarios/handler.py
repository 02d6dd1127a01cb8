"""A task handler for the official ``cueapi-worker`` daemon (its config runs it as a shell command).

``handler.py ok [words…]``: prints a JSON object of the CUEAPI_* environment the daemon
gave it (plus GREETING and the words after ``ok``, which come from ``{{ payload.… }}``
templates in the config) and exits 0; when the payload has ``"evidence": true`` it also
writes an outcome file with evidence fields. ``handler.py fail``: writes to stderr, exits 3.
``handler.py sleep <s>``: sleeps, then as ``ok``.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    mode = sys.argv[1]
    if mode == "fail":
        print("handler failed on purpose", file=sys.stderr)
        return 3
    if mode == "sleep":  # a long handler: the daemon never sends execution heartbeats meanwhile
        time.sleep(float(sys.argv[2]))
    env = {k: v for k, v in os.environ.items() if k.startswith("CUEAPI_")}
    out = {
        "execution_id": env.get("CUEAPI_EXECUTION_ID"),
        "cue_id": env.get("CUEAPI_CUE_ID"),
        "cue_name": env.get("CUEAPI_CUE_NAME"),
        "worker_id": env.get("CUEAPI_WORKER_ID"),
        "payload": json.loads(env.get("CUEAPI_PAYLOAD", "null")),
        "has_api_key": bool(env.get("CUEAPI_API_KEY")),
        "base_url": env.get("CUEAPI_BASE_URL"),
        "greeting": os.environ.get("GREETING"),
        "words": sys.argv[2:],
    }
    if isinstance(out["payload"], dict) and out["payload"].get("evidence"):
        with open(os.environ["CUEAPI_OUTCOME_FILE"], "w", encoding="utf-8") as f:
            json.dump({"external_id": f"ext-{out['execution_id']}", "summary": "made by the handler"}, f)
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
