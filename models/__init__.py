"""Scorers: text classifier, lexicon, image hashes, faces, nudity."""
