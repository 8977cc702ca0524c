"""Files: image formats, decoding, encoding, atomic writes, and local-or-remote URIs."""
