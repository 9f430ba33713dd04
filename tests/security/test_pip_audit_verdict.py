"""CI's reading of pip-audit's report (.ci/pip_audit_verdict.py): a skip is not a pass."""

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / ".ci" / "pip_audit_verdict.py"
_spec = importlib.util.spec_from_file_location("pip_audit_verdict", _PATH)
pip_audit_verdict = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pip_audit_verdict)

AUDITED = {"name": "django", "version": "5.2.19", "vulns": []}
SKIPPED = {"name": "redis", "skip_reason": "Dependency not found on PyPI: redis (8.1.0)"}
VULNERABLE = {
    "name": "django",
    "version": "5.2.0",
    "vulns": [{"id": "PYSEC-2025-1", "fix_versions": ["5.2.1"]}],
}


def verdict(*dependencies, require_feed=False):
    return pip_audit_verdict.verdict(
        {"dependencies": list(dependencies)}, require_feed=require_feed
    )


def test_a_known_vulnerability_fails_and_names_the_fix():
    code, lines = verdict(VULNERABLE, AUDITED)

    assert code == 1
    assert lines == ["VULNERABLE django 5.2.0: PYSEC-2025-1 (fix: 5.2.1)"]


def test_every_dependency_audited_and_clean_passes():
    assert verdict(AUDITED, AUDITED)[0] == 0


def test_a_partial_audit_fails():
    code, lines = verdict(AUDITED, SKIPPED)

    assert code == 1
    assert lines == [f"NOT AUDITED redis: {SKIPPED['skip_reason']}"]


@pytest.mark.parametrize(("require_feed", "code"), [(False, 0), (True, 1)])
def test_an_unreachable_feed_warns_and_fails_only_when_required(require_feed, code):
    result, lines = verdict(SKIPPED, SKIPPED, require_feed=require_feed)

    assert result == code
    assert lines[0].startswith("WARNING: pip-audit could not reach a vulnerability feed")
