"""LoRA adapter files in the BlobStore: ids, manifest and store.

Written by trainer, read by inference; no torch here.
"""
