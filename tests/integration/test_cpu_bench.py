import re

from metasparse.experiments import cpu_bench


def test_the_cpu_report_times_every_path_and_checks_the_fast_gradient():
    lines = cpu_bench.run(["cpu"], rounds=1, compile=False, fit=False, trainer_steps=1, log=lambda message: None)
    text = "\n".join(lines)
    for row in ("| naive loop |", "| engine (vmap) |", "| fast path (eager) |", "| Trainer, fast SIREN path |",
                "| Trainer, torch.func engine |"):
        assert row in text
    # The fast path's meta-gradient is the naive loop's, to float32 and to float64 rounding.
    fp32 = float(re.search(r"\| fast path \(eager\) \|.*theta ([0-9.e+-]+) \|", text).group(1))
    fp64 = float(re.search(r"float64: theta ([0-9.e+-]+)", text).group(1))
    assert fp32 < 1e-5 and fp64 < 1e-12
