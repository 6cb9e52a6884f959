"""A schemathesis run over the node's own OpenAPI document: no ``5xx`` and no schema violation.

One real node process (n = 1, as in ``test_api``) with a capture key serves a ledger with
committed data: two more organisations (a buyer and an auditor), a clerk, an auditor, a
production plot, lots ``KP-1`` and ``KP-2`` (the document's path examples), a split, a shipment
received with a loss and a certification, in eight blocks (the example height 7 exists). The
document under test is the node's ``/openapi.json`` with two additions that point the examples
at this ledger, changing no schema: the ids of committed events as the ``event_id`` examples, and
a freshly signed harvest as an example body of ``POST /v1/events`` (the document's own examples
are illustrations whose ids and signatures exist on no ledger).

``schemathesis run`` (the command line, as CI would run it; the pytest plugin's fixture loader
fails under pytest 9.2, ``docs/decisions.md`` D33) tests every operation twice, with all its
phases (examples, coverage, fuzzing, stateful) and positive and negative data:

* **signed**: :mod:`tests.e2e.schemathesis_auth` signs every request of a signed route (RFC 9421)
  as an auditor, who may read everything, and gives ``POST /epcis/capture`` its bearer token, so
  the real handlers answer, not only the ``401`` path; the test asserts that every operation
  answered ``2xx`` at least once and that no signature was refused as not matching its request
  (which would mean the hooks sign something other than what is sent);
* **unsigned**: nothing added; every signed route answers ``401`` and never ``2xx``.

Checks: every check of schemathesis (``--checks all``) — among them ``not_a_server_error``,
``status_code_conformance``, ``content_type_conformance``, ``response_schema_conformance``,
``response_headers_conformance``, ``negative_data_rejection``, ``ignored_auth``,
``unsupported_method`` and ``use_after_free`` — except one:

* ``positive_data_acceptance`` is excluded: it wants every schema-valid request accepted, but
  this API refuses schema-valid requests on the ledger's state, as DESIGN.md §6 says it must: a
  tree size beyond the log or before the event (``400 proof-impossible``), ``to`` before ``from``
  (``400 export-range``), a page token past the log (``400 query-parameter``), an event whose
  signatures or rules fail (``422 events-refused``: no generator can sign an event). Every such
  answer is still checked against its documented status, content type and schema.

Problem details (RFC 9457, ``application/problem+json``) need no exception: every route
documents its problem answers with that media type and the ``Problem`` schema.

The run is deterministic (``--generation-deterministic``, one worker) and bounded
(:data:`MAX_EXAMPLES` cases an operation in fuzzing; about 30 s for both passes); set
``RANTAI_SCHEMATHESIS_EXAMPLES`` for a longer run. Its requests go through the node's rate
limits at their defaults (D31) and stay well under them (every route documents its ``429``).
Schemathesis writes its files (report, crash cache) in the test's temporary directory, never in
the repository. A last test keeps the one bug the runs found fixed (see
:func:`test_capture_asks_for_its_token_before_reading_its_parameters`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.keys import public_key_bytes
from node.keystore import load_key, save_key
from tests._paths import REPO
from tests.e2e.network import Network

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 50
"""Fuzzing cases an operation (the other phases generate what the document calls for)."""
KOPI, BUYER, AUDITORS = "koperasi-kopi", "eu-buyer", "lsk-kalbar"
SITI = f"{KOPI}/siti"
TOKEN = "schemathesis-capture-token-7d1e4b"
HOOKS = "tests.e2e.schemathesis_auth"
"""The hooks module of the signed pass (named, not imported: importing it registers its auth
provider with schemathesis in this process)."""
_HOOK_KEY, _HOOK_TOKEN = "RANTAI_SCHEMATHESIS_KEY", "RANTAI_SCHEMATHESIS_TOKEN"
"""Where the hooks find the signing key's PEM file and the capture token."""
_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
_SIGNATURE_REFUSED = {"signature-mismatch", "digest-mismatch", "signature-components"}
"""401 kinds that would mean the hooks signed another request than the one sent."""


@dataclass
class Target:
    """The node under test and the files of a run."""

    network: Network
    document: Path
    key: Path

    @property
    def directory(self) -> Path:
        return self.document.parent


# --- the ledger -----------------------------------------------------------------------------


def _member(network: Network, member_id: str, role: str, label: str) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "role": role,
        "public_keys": [public_key_bytes(network.key(label)).hex()],
        "profile_hash": hashlib.sha256(label.encode()).hexdigest(),
    }


def _org(org_id: str, kind: str, admin: Ed25519PrivateKey) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "name": org_id,
        "kind": kind,
        "admins": [public_key_bytes(admin).hex()],
    }


def _commit(network: Network, *events: dict[str, Any]) -> list[str]:
    """Submit events as one batch and wait for their block; their ids."""
    response = network.submit(1, list(events))
    assert response.status_code == 200, response.text
    return [answer["event_id"] for answer in response.json()["events"]]


def _harvest(network: Network, lot_id: str, quantity: str) -> dict[str, Any]:
    payload = {
        "lot_id": lot_id,
        "commodity": "coffee",
        "quantity": quantity,
        "uom": "kg",
        "producer": SITI,
        "plot_id": "PLT-SITI-01",
        "harvested_on": "2026-11-20",
    }
    return network.event("lot.create", payload, [network.key("producer")])


def _seed(network: Network) -> list[str]:
    """Commit the ledger of the module docstring; the ids of its events, in log order."""
    network.bootstrap(1)
    governance = load_key(network.directory / "keys" / "governance.pem")
    kopi, producer = network.key("admin"), network.key("producer")
    buyer, audit = network.key("buyer-admin"), network.key("audit-admin")
    plot = {
        "plot_id": "PLT-SITI-01",
        "member_id": SITI,
        "commodity": "coffee",
        "area_ha": "1.5",
        "geometry": {"type": "Point", "coordinates": [109.123456, 1.234567]},
    }
    split = {"lot_id": "KP-1", "outputs": [{"lot_id": "KP-1A", "quantity": "100"}]}
    ship = {"lot_id": "KP-1A", "shipment_id": "SH-1", "to": BUYER}
    batches = [
        [
            network.event(
                "member.register", _member(network, f"{KOPI}/clerk-1", "clerk", "clerk"), [kopi]
            ),
            network.event("org.register", _org(BUYER, "buyer", buyer), [governance]),
            network.event("org.register", _org(AUDITORS, "auditor", audit), [governance]),
        ],
        [
            network.event(
                "member.register",
                _member(network, f"{AUDITORS}/ana", "auditor", "auditor"),
                [audit],
            ),
            network.event("plot.register", plot, [kopi]),
        ],
        [_harvest(network, "KP-1", "900"), _harvest(network, "KP-2", "400")],
        [network.event("lot.split", split, [producer])],
        [network.event("lot.ship", ship, [producer])],
        [
            network.event(
                "lot.receive",
                {"lot_id": "KP-1A", "shipment_id": "SH-1", "quantity_received": "98"},
                [buyer],
            )
        ],
        [
            network.event(
                "lot.certify",
                {
                    "lot_id": "KP-2",
                    "scheme": "organic",
                    "certificate": "ORG-1",
                    "valid_until": "2027-12-31",
                },
                [network.key("auditor")],
            )
        ],
    ]
    return [event_id for batch in batches for event_id in _commit(network, *batch)]


def _document(network: Network, event_ids: list[str]) -> dict[str, Any]:
    """The node's OpenAPI document with examples from this ledger (see the module docstring)."""
    response = httpx.get(f"{network.url(1)}/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if (parameter["in"], parameter["name"]) == ("path", "event_id"):
                    parameter.pop("example", None)
                    parameter["examples"] = {
                        f"committed-{n}": {"value": event_id}
                        for n, event_id in enumerate(event_ids)
                    }
    submit = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    submit["examples"]["signed"] = {
        "summary": "a harvest signed by its producer",
        "value": _harvest(network, "KP-SCHEMATHESIS", "12.5"),
    }
    return document


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    directory = tmp_path_factory.mktemp("schemathesis")
    network = Network.create(directory / "net", 1)
    node_dir = network.directory / "node-1"
    save_key(network.key("clerk"), node_dir / "capture-clerk.pem")
    with (node_dir / "node.toml").open("a") as config:
        config.write(f'\n[capture]\nkey = "capture-clerk.pem"\ntoken = "{TOKEN}"\n')
    network.start_all()
    try:
        event_ids = _seed(network)
        document = directory / "openapi.json"
        document.write_text(json.dumps(_document(network, event_ids)))
        key = directory / "auditor.pem"
        save_key(network.key("auditor"), key)
        yield Target(network, document, key)
    finally:
        network.stop_all()


# --- the run --------------------------------------------------------------------------------


@dataclass
class Run:
    """What one ``schemathesis run`` printed and every answer it got, by operation."""

    returncode: int
    output: str
    answers: dict[str, Counter[int]]
    unauthorised: Counter[str]


def _content(value: Any) -> bytes:
    if isinstance(value, dict) and "$base64" in value:
        return base64.b64decode(value["$base64"])
    return str(value or "").encode()


def _problem_kind(content: bytes) -> str:
    try:
        kind = json.loads(content).get("type", "")
    except (ValueError, AttributeError):
        return "?"
    return str(kind).rsplit("/", 1)[-1]


def _read_report(path: Path) -> tuple[dict[str, Counter[int]], Counter[str]]:
    """Statuses by ``METHOD /path`` and 401 problem kinds, from an NDJSON report (none if the
    run wrote no report)."""
    answers: dict[str, Counter[int]] = {}
    unauthorised: Counter[str] = Counter()
    if not path.exists():
        return answers, unauthorised
    for line in path.read_text().splitlines():
        event = json.loads(line)
        recorder = event.get("ScenarioFinished", {}).get("recorder", {})
        cases = recorder.get("cases", {})
        for case_id, interaction in recorder.get("interactions", {}).items():
            response = interaction.get("response")
            if response is None:
                continue
            case = cases[case_id]["value"]
            status = response["status_code"]
            answers.setdefault(f"{case['method']} {case['path']}", Counter())[status] += 1
            if status == 401:
                unauthorised[_problem_kind(_content(response.get("content")))] += 1
    return answers, unauthorised


def _run(target: Target, *, signed: bool) -> Run:
    name = "signed" if signed else "unsigned"
    reports = target.directory / name
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    # The run works in its temporary directory, which is not the repository: let it find the
    # hooks module (and the modules that module imports).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if signed:
        env["SCHEMATHESIS_HOOKS"] = HOOKS
        env[_HOOK_KEY] = str(target.key)
        env[_HOOK_TOKEN] = TOKEN
    examples = os.environ.get("RANTAI_SCHEMATHESIS_EXAMPLES", str(MAX_EXAMPLES))
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", str(target.document)),
        *("--url", target.network.url(1)),
        *("--checks", "all", "--exclude-checks", "positive_data_acceptance"),
        *("--max-examples", examples, "--generation-deterministic", "--workers", "1"),
        *("--report", "ndjson", "--report-ndjson-path", str(reports / "report.ndjson")),
        "--no-color",
    ]
    result = subprocess.run(
        command,
        cwd=target.directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    answers, unauthorised = _read_report(reports / "report.ndjson")
    return Run(result.returncode, result.stdout + result.stderr, answers, unauthorised)


def _operations(target: Target) -> dict[str, bool]:
    """Each operation of the document (``METHOD /path``): does it need credentials (a request
    signature or the capture token)?"""
    document = json.loads(target.document.read_text())
    return {
        f"{method.upper()} {path}": bool(operation.get("security"))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in _METHODS
    }


def _successes(run: Run, operation: str) -> int:
    return sum(n for status, n in run.answers.get(operation, Counter()).items() if status < 300)


def test_signed_requests_find_no_failure(target: Target) -> None:
    run = _run(target, signed=True)
    assert run.returncode == 0, run.output
    unanswered = [op for op in _operations(target) if _successes(run, op) == 0]
    assert not unanswered, f"no 2xx answer from {unanswered}: {run.answers}"
    refused = {kind: n for kind, n in run.unauthorised.items() if kind in _SIGNATURE_REFUSED}
    assert not refused, f"signed requests refused: {refused}"


def test_unsigned_requests_find_no_failure(target: Target) -> None:
    run = _run(target, signed=False)
    assert run.returncode == 0, run.output
    for operation, needs_credentials in _operations(target).items():
        answers = run.answers.get(operation, Counter())
        assert answers, f"{operation} was not tested"
        if needs_credentials:
            assert answers[401] > 0, (operation, answers)
            assert _successes(run, operation) == 0, (operation, answers)


def test_capture_asks_for_its_token_before_reading_its_parameters(target: Target) -> None:
    """Found by the negative run's ``missing_required_header`` check (``docs/decisions.md``
    D33): without the token, a malformed ``wait`` answered ``422`` instead of ``401``."""
    response = httpx.post(
        f"{target.network.url(1)}/epcis/capture",
        params={"wait": "0", "timeout": "true"},
        content=b"{}",
        timeout=10,
    )
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
