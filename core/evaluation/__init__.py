"""Measuring the models: the metrics every evaluation shares (`metrics`) and, per capability, the
evaluation on the held-out emoji (`translate`, `diffae`)."""
