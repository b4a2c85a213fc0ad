"""Helpers for tests and demos: start the reference Core in-process on a free port, and a
`requests` session that speaks to its `/_sim/*` endpoints with the client certificate."""
import os

import requests

from coresim.server import CoreSim
from services.certs import generate_dev


def start_core(data_dir, certs_dir=None, **config):
    """Start a CoreSim on 127.0.0.1:<free port> in background threads (development certificates
    are generated into `certs_dir` — default data_dir/certs — when absent). Call `.stop()`."""
    certs_dir = certs_dir or os.path.join(data_dir, "certs")
    generate_dev(certs_dir)
    return CoreSim(data_dir, port=0, certs_dir=certs_dir, **config).start()


def sim_session(certs_dir, cert="client.pem", key="client.key"):
    """A requests.Session with the client certificate and the CA of `certs_dir` (environment
    CA bundles ignored)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = os.path.join(certs_dir, "ca.pem")
    session.cert = (os.path.join(certs_dir, cert), os.path.join(certs_dir, key))
    return session


def client_config(core):
    """The settings that point Message Center's Core client at `core` (its URL and the development
    client certificate, key and CA it generated)."""
    return {"CORE_URL": core.url, "CORE_CLIENT_CERT": os.path.join(core.certs_dir, "client.pem"),
            "CORE_CLIENT_KEY": os.path.join(core.certs_dir, "client.key"),
            "CORE_CA": os.path.join(core.certs_dir, "ca.pem")}


def stats(session, core):
    """The simulator's counters (GET /_sim/stats): accepted, events, batches, …"""
    return session.get(core.url + "/_sim/stats").json()


def faults(session, core, **values):
    """Set simulated faults (POST /_sim/faults); returns the faults now in force."""
    response = session.post(core.url + "/_sim/faults", json=values)
    response.raise_for_status()
    return response.json()["faults"]
