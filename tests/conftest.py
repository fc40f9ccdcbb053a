"""Suite-wide settings: exact float32 references (TF32 off) and, under CI=true, no silent skips
of tests that need the real data or an optional package."""
import os

import pytest
import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

_STRICT_PREFIXES = ("needs data", "needs package")
_strict_skips = []


def pytest_runtest_logreport(report):
    if report.skipped and os.environ.get("CI") == "true":
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        if reason.startswith(_STRICT_PREFIXES):
            _strict_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if _strict_skips:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _strict_skips:
        terminalreporter.section("CI=true: skipped for missing data or packages (counts as a failure)")
        for line in _strict_skips:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
