"""What an operator reads: JSON log lines and Prometheus metrics."""
