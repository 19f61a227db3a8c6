"""torch is an optional peer: importing dfjax (and its registries, runner, CLI) must not
import it; only dfjax.peers.torch_models does."""

import subprocess
import sys


def test_dfjax_does_not_import_torch():
    code = ("import sys, dfjax, dfjax.attacks, dfjax.models, dfjax.runner, dfjax.cli, "
            "dfjax.benchmarks, dfjax.peers; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'torchattacks')); assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
