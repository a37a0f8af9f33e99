"""reports: cycle/energy estimator, overhead and OPS tables, design-space sweeps, the demo flow."""
