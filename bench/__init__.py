"""dshub benchmarks (`make bench`): real stacks, baselines side by side, BENCHMARKS.md."""
