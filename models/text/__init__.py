"""Text scorers: the multilingual encoder, the classifier on top of it, the lexicon."""
