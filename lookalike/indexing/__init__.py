"""Build an embeddings folder from a catalog: chunks, the decode/inference pipeline, reuse, Ray."""
