"""`python -m coresim` — run the reference Core in the foreground.

Reads CORE_PORT (default 8443), CORE_HOST (default 127.0.0.1) and MC_DATA_DIR (default
./instance): certificates from MC_DATA_DIR/certs/{server.pem,server.key,ca.pem}, data in
MC_DATA_DIR/coresim.db. Simulation knobs: CORESIM_LATENCY, CORESIM_FAILURE_RATIO, CORESIM_TPS,
CORESIM_CHANNELS, CORESIM_REJECT_PREFIX, CORESIM_UNDELIVERABLE_PREFIX (or the flags below)."""
import argparse
import contextlib
import logging
import os
import signal
import sys

from coresim.server import CoreSim


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m coresim", description="Reference SMS Core (mTLS).")
    parser.add_argument("--host", default=env.get("CORE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("CORE_PORT") or 8443))
    parser.add_argument("--data-dir", default=env.get("MC_DATA_DIR") or "instance")
    parser.add_argument("--certs-dir", default=None, help="default: DATA_DIR/certs")
    parser.add_argument("--latency", type=float, default=float(env.get("CORESIM_LATENCY") or 1.0),
                        help="seconds from acceptance to the final delivery report")
    parser.add_argument("--failure-ratio", type=float, default=float(env.get("CORESIM_FAILURE_RATIO") or 0.03))
    parser.add_argument("--tps", type=float, default=float(env.get("CORESIM_TPS") or 500), help="per channel")
    parser.add_argument("--channels", type=int, default=int(env.get("CORESIM_CHANNELS") or 2))
    parser.add_argument("--reject-prefix", default=env.get("CORESIM_REJECT_PREFIX", "999"))
    parser.add_argument("--undeliverable-prefix", default=env.get("CORESIM_UNDELIVERABLE_PREFIX", "998"))
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request and refused handshake")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = os.path.abspath(args.data_dir)
    try:
        core = CoreSim(data_dir, host=args.host, port=args.port, certs_dir=args.certs_dir, verbose=args.verbose,
                       latency_seconds=args.latency, failure_ratio=args.failure_ratio, tps=args.tps,
                       channels=args.channels, reject_prefix=args.reject_prefix,
                       undeliverable_prefix=args.undeliverable_prefix)
    except (FileNotFoundError, OSError) as exc:
        print(f"coresim: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    logging.getLogger("coresim").info("reference Core on %s (data %s, client certificates required)",
                                      core.url, data_dir)
    with contextlib.suppress(KeyboardInterrupt):
        core.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
