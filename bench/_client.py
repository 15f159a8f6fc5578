"""One timed upload with our client: a Solve of a raw LLB definition that only reads a local
directory, so the figure is the context transfer (plus the daemon's bookkeeping), nothing else.

Run as a child of bench/run (which reads its peak RSS); prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from bench.llb import local_only_definition
from pybuildx.buildkit._pb import control_pb2
from pybuildx.buildkit.control import control_stub
from pybuildx.buildkit.directsync import DirectSyncSession
from pybuildx.buildkit.filesync import FileSyncAttachable, LocalSource
from pybuildx.buildkit.session import Session, new_id
from pybuildx.buildkit.upload_ledger import UploadLedger
from pybuildx.transport.channel import open_channel


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", required=True)
    parser.add_argument("--context", required=True, type=Path)
    parser.add_argument("--ledger-dir", type=Path, help="reuse the shared key across runs")
    parser.add_argument("--path", choices=("direct", "grpc"), default="direct")
    parser.add_argument("--name", default="context", help="local name (a cache key part)")
    args = parser.parse_args()
    # Our peak before any transfer: what the imports cost, apart from the context's size.
    rss_after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    start = time.perf_counter()
    ledger = UploadLedger.open(args.ledger_dir, "bench") if args.ledger_dir else None
    key = ledger.shared_key if ledger is not None else new_id()
    dirs = {args.name: LocalSource(path=args.context)}
    channel = open_channel(args.addr)
    request = control_pb2.SolveRequest(Ref=new_id(), Definition=local_only_definition(args.name))
    request.Cache.SetInParent()
    if args.path == "direct":
        files = DirectSyncSession(channel, dirs, ledger=ledger, shared_key=key)
        with files, Session(channel, []) as session:
            request.Session = session.id
            request.FrontendAttrs.update(files.frontend_attrs())
            # Raw LLB has no frontend to read local-sessionid: name the session in the source.
            request.Definition.CopyFrom(local_only_definition(args.name, session=files.id))
            control_stub(channel).Solve(request, timeout=1800)
        sent = files.files.bytes_sent
    else:
        sync = FileSyncAttachable(dirs, ledger=ledger)
        with Session(channel, [sync], shared_key=key) as session:
            request.Session = session.id
            control_stub(channel).Solve(request, timeout=1800)
        sent = sync.bytes_sent
    channel.close()
    seconds = time.perf_counter() - start
    if ledger is not None:
        ledger.close()
    report = {
        "seconds": seconds,
        "bytes_sent": sent.get(args.name, 0),
        "rss_after_imports_kib": rss_after_imports,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
