"""medlit search indexes: embeddings, FAISS and lexical indexes built from the library (see issue 3)."""
