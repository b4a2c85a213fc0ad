"""Reference SMS Core implementing docs/core-api.md: an HTTPS server that requires client
certificates of the installation CA, persists messages in SQLite, simulates ESME channels,
delivery latency and failures, and has fault switches for tests (`/_sim/*`).

Run: `python -m coresim` (see `python -m coresim --help`)."""
from coresim.server import CoreSim
from coresim.sim import SCHEMA_VERSION, CoreSimulator

__all__ = ["CoreSim", "CoreSimulator", "SCHEMA_VERSION"]
