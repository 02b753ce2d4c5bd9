"""`make bench`: throughput, latency and scaling figures of the demo, measured on real processes."""
