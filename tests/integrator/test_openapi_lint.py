"""The OpenAPI document passes Redocly's recommended rules, as an integrator's CI lints it.

`make test` installs Redocly CLI into .tools/redocly (`.ci/install-redocly`). Without it the
test is skipped, except under CI=true, where it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from movietickets.app import create_app
from tests.conftest import IN_CI, make_settings

ROOT = Path(__file__).resolve().parents[2]
REDOCLY = ROOT / ".tools" / "redocly" / "node_modules" / ".bin" / "redocly"

# The warnings left, each on purpose: these operations never answer 4xx (no input, no
# credentials, not rate limited), and documenting a 4xx they never send would mislead.
EXPECTED_WARNINGS = {
    ("operation-4xx-response", "#/paths/~1/get/responses"),
    ("operation-4xx-response", "#/paths/~1healthz/get/responses"),
    ("operation-4xx-response", "#/paths/~1readyz/get/responses"),
    ("operation-4xx-response", "#/paths/~1api~1movies/get/responses"),
    ("operation-4xx-response", "#/paths/~1api~1purchase-ticket/get/responses"),
}


def redocly() -> Path:
    if not REDOCLY.exists():
        message = f"Redocly CLI is not installed at {REDOCLY}: run `make test`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return REDOCLY


def lint(document: dict[str, Any], workdir: Path) -> dict[str, Any]:
    path = workdir / "openapi.json"
    path.write_text(json.dumps(document))
    completed = subprocess.run(  # noqa: S603 (our own tool, our own file)
        [str(redocly()), "lint", str(path), "--extends=recommended", "--format=json"],
        cwd=workdir,  # no redocly.yaml of anyone's: the recommended rules as they ship
        env={**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def test_the_document_has_no_lint_errors(tmp_path: Path) -> None:
    report = lint(create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi(), tmp_path)
    problems = [
        (problem["severity"], problem["ruleId"], problem["location"][0]["pointer"])
        for problem in report["problems"]
    ]
    errors = [problem for problem in problems if problem[0] == "error"]
    assert errors == []
    assert report["totals"]["errors"] == 0
    warnings = {(rule, pointer) for severity, rule, pointer in problems if severity == "warn"}
    assert warnings == EXPECTED_WARNINGS


def test_the_linter_finds_errors(tmp_path: Path) -> None:
    """The check itself: an operation without a security declaration is an error."""
    document = create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()
    del document["paths"]["/api/movies"]["get"]["security"]
    report = lint(document, tmp_path)
    assert report["totals"]["errors"] == 1
    assert report["problems"][0]["ruleId"] == "security-defined"
