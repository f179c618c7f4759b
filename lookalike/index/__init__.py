"""The embeddings folder on disk and the searches over it: exact, approximate, one top_k contract."""
