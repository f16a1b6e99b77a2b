"""Image scorers: face detection and face embeddings for the consent check."""
