"""The steps of one call: request building, retry decisions, the attempt loop, batches."""
