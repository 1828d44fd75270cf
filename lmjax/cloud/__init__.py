"""Launching lmjax on Cloud TPU VMs: a slice spec, the gcloud commands built from it, a runner
that executes or prints them, and a babysitter that recreates preempted slices (docs/tpu.md)."""
