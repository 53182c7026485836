"""An agent process that records spans at a fixed rate, for delivery tests and benchmarks.

    python -m tests.e2e.agent_load --runs 10 --spans 600 --rate 1000 [--flush 60]

Each run is one ``@agent``-style run span holding ``spans - 1`` tool spans; the whole load is
``runs * spans`` spans, emitted at ``rate`` spans per second (0: as fast as the loop goes). The
SDK is configured from ``AGENTOPS_*`` variables. At the end it flushes for up to ``--flush``
seconds (or shuts down within ``--shutdown`` seconds) and prints one JSON line: the spans
emitted, the SDK's stats and the flush or shutdown result, and when the last span was emitted
and the flush ended (``time.time()``). With ``--hold`` it prints ``{"emitted": N}`` once the
load is recorded and waits for a line on stdin before it flushes or shuts down.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import agentops_sdk as agentops


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--spans", type=int, default=600, help="spans per run, the run's too")
    parser.add_argument("--rate", type=float, default=1000.0, help="spans per second; 0: no pause")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--flush", type=float, default=60.0, help="flush for up to this long")
    group.add_argument("--shutdown", type=float, help="shut down within this long instead")
    parser.add_argument("--hold", action="store_true", help="wait for stdin before the end")
    arguments = parser.parse_args(argv)

    client = agentops.init()
    assert client is not None, "AGENTOPS_ENABLED is off"
    print(json.dumps({"ready": time.time()}), flush=True)
    emitted = 0
    started = time.monotonic()
    for run in range(arguments.runs):
        with agentops.run(f"load-{run}"):
            emitted += 1
            for _ in range(arguments.spans - 1):
                with agentops.span("tool", kind="tool"):
                    pass
                emitted += 1
                if arguments.rate:
                    ahead = started + emitted / arguments.rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
    last_emitted = time.time()
    if arguments.hold:
        print(json.dumps({"emitted": emitted}), flush=True)
        sys.stdin.readline()
    if arguments.shutdown is not None:
        result = client.shutdown(arguments.shutdown)
    else:
        result = client.flush(arguments.flush)
    report = {
        "emitted": emitted,
        "last_emitted": last_emitted,
        "ended": time.time(),
        "result": dataclasses.asdict(result),
        "stats": dataclasses.asdict(client.stats()),
    }
    print(json.dumps(report), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
