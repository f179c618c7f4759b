"""Retrieval quality: metrics, scoring an index, reports and their plots."""
