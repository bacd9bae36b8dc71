"""The service registry: instances, registration and heartbeats, discovery with its cache, load
balancing and fleet-wide health monitoring.
"""
