"""Sweeps of configs run as one experiment: `lmjax sweep run|status FILE`.

`spec` reads the sweep file into points, `expressions` evaluates derived values safely,
`identity` names and hashes points, `status` claims points and records their state,
`worker` runs one point (in its own process), `runner` drives an executor over the points,
`plan` estimates N, D, C and time for the dry-run, `results` writes the tables. See
docs/sweeps.md.
"""

from lmjax.sweep.spec import Point, SweepSpec, load_spec, points

__all__ = ["Point", "SweepSpec", "load_spec", "points"]
