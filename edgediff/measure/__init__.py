"""Measuring: latency, `edgediff bench` (one subprocess per target) and its report and plots, device budgets,
Android over adb, the FID-proxy quality metric, compression reports and σ-schedule tuning."""
