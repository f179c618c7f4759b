"""Recommendations from query pictures: the recommender, feedback, filters, near-duplicates, explanations."""
