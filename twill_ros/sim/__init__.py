"""Digital twin: workloads and the discrete-event simulator driving the core scheduler."""
