"""The msfw-redis command and its demo fleet."""
