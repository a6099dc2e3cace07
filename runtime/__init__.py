"""Where actions run: the Runtime protocol and its local and Docker sandboxes."""
