"""Keys, certificates and the sealing of parts (CMS that openssl reads)."""
