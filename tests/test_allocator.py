"""irregconv.allocator: the opt-in glibc tuning takes effect (in a subprocess: it is process-wide), and the
`irregconv` command turns it on."""
import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_reuse_freed_memory_takes_effect_and_is_described():
    out = _python("from irregconv import allocator; print(allocator.describe()); "
                  "print(allocator.reuse_freed_memory()); print(allocator.describe())")
    before, enabled, after = out.splitlines()
    assert before == "allocator: system default" and enabled == "True" and "kept for reuse" in after


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_cli_enables_it_for_its_subcommands():
    out = _python("import sys; from irregconv import allocator, cli; "
                  "cli.COMMANDS['probe'] = 'irregconv.allocator'; "
                  "allocator.add_parser = lambda sub: sub.add_parser('probe').set_defaults("
                  "run=lambda args: print(allocator.describe())); "
                  "cli.main(['probe'])")
    assert "kept for reuse" in out
