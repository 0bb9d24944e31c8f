"""Every benchmark runs end to end in its --quick form and writes nothing (slow: about 4 minutes in all)."""

import pytest

from genzoo.bench import BENCHES
from genzoo.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BENCHES))
def test_every_benchmark_runs_quick_and_writes_no_table(name, tmp_path, mnist_root, capsys):
    output = tmp_path / "BENCHMARKS.md"
    assert main(["bench", name, "--quick", "--data-root", str(mnist_root), "--runs-dir", str(tmp_path / "runs"),
                 "--output", str(output), "--no-progress"]) == 0
    assert "|" in capsys.readouterr().out  # the table is printed
    assert not output.exists()
