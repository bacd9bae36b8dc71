"""The composition root: ServiceSDK builds the store, the components and the pipeline once, and the
module-level shortcuts use the default SDK.
"""
