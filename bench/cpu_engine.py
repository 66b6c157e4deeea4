"""The CPU benchmark of the engine at the settings the project trains on (also ``metasparse bench``).

    python bench/cpu_engine.py                 # both settings, 2 threads: meta-step, fitting, Trainer
    python bench/cpu_engine.py --compile       # also the torch.compile'd fast path (30-60 s each)
    python bench/cpu_engine.py --allocator     # glibc malloc keeps freed memory (fewer page faults)

What is measured is described in ``metasparse.experiments.cpu_bench``.
"""

from __future__ import annotations

import argparse
import platform

import torch

from metasparse.experiments import cpu_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--settings", default="codec,cpu")
    parser.add_argument("--compile", action="store_true", help="include the torch.compile'd fast path")
    parser.add_argument("--no-fit", action="store_true", help="skip the fitting comparison")
    parser.add_argument("--trainer-steps", type=int, default=10, help="Trainer steps a round (0: skip)")
    parser.add_argument("--allocator", action="store_true", help="keep freed memory in the process (mallopt)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tuned = cpu_bench.keep_freed_memory() if args.allocator else False
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
               f"torch {torch.__version__}" + (", mallopt (freed memory kept)" if tuned else ""))
    lines = cpu_bench.run(args.settings.split(","), args.rounds, args.compile, not args.no_fit, args.trainer_steps,
                          print)
    print()
    print("\n".join([f"CPU benchmark on {machine}", "", *lines]))


if __name__ == "__main__":
    main()
