"""An example Liaison plugin (see plugin.py)."""
