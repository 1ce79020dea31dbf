"""postback_ops: what ops and developers run outside Lambda (the config script, the local stack)."""
