"""Developer tools: the local federation launcher (tests, benchmarks, `mlax demo`) and the demo."""
