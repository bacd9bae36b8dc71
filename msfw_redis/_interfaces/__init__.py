"""What users decorate: typed service interfaces, the resilience decorators and the function-level
cache.
"""
