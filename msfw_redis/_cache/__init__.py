"""The shared response cache: keys and credential fingerprints, storage rules, stored envelopes,
single-flight fills and wake-ups.
"""
