"""Training: optimizer, state, sharded step functions, the loop, checkpoints and logging."""
