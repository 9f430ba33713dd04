"""Turn pip-audit's JSON report into CI's verdict: exit 1 on any known vulnerability.

pip-audit itself passes when it could audit nothing: a dependency it cannot look up is only
"skipped". So the skips are judged here:
- every dependency skipped because the vulnerability feed did not answer (a network without
  PyPI's JSON API, as in an offline sandbox): a loud warning, and a pass unless
  PIP_AUDIT_REQUIRE_FEED=1 says the feed must be reachable;
- some audited and some skipped: a failure, since a partial audit would read as a clean one.

Usage: python3 .ci/pip_audit_verdict.py REPORT.json
"""

import json
import os
import sys


def verdict(report: dict, *, require_feed: bool) -> tuple[int, list[str]]:
    """Return the exit code and the lines to print for a pip-audit JSON report."""
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if "skip_reason" in d]
    audited = len(dependencies) - len(skipped)
    lines = []
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version"
            lines.append(f"VULNERABLE {dep['name']} {dep['version']}: {vuln['id']} (fix: {fixes})")
    if vulnerable:
        return 1, lines
    if skipped and audited == 0:
        lines.append(
            f"WARNING: pip-audit could not reach a vulnerability feed; none of the "
            f"{len(skipped)} locked dependencies was audited ({skipped[0]['skip_reason']})."
        )
        return (1 if require_feed else 0), lines
    if skipped:
        lines += [f"NOT AUDITED {d['name']}: {d['skip_reason']}" for d in skipped]
        return 1, lines
    lines.append(f"No known vulnerabilities in {audited} locked dependencies.")
    return 0, lines


def main() -> int:
    with open(sys.argv[1]) as report_file:
        report = json.load(report_file)
    code, lines = verdict(report, require_feed=os.environ.get("PIP_AUDIT_REQUIRE_FEED") == "1")
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
